"""Overwriting keeps the destination's mode, owner and group; new files
follow the umask; a symlinked destination keeps being a link to the file
that was replaced, atomically, beside it (issue 15)."""

import os
import stat
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from safeweights.numpy import load_file, save_file

OLD = {"w": np.arange(4, dtype=np.float32)}
NEW = {"w": np.arange(8, dtype=np.float32)}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_overwriting_keeps_a_private_mode(tmp_path):
    path = tmp_path / "secret.safetensors"
    save_file(OLD, path)
    os.chmod(path, 0o600)
    save_file(NEW, path)
    assert mode(path) == 0o600
    np.testing.assert_array_equal(load_file(path)["w"], NEW["w"])


def test_overwriting_keeps_a_group_writable_mode(tmp_path):
    path = tmp_path / "shared.safetensors"
    save_file(OLD, path)
    os.chmod(path, 0o664)
    save_file(NEW, path)
    assert mode(path) == 0o664


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_overwriting_keeps_owner_and_group_where_the_writer_may_set_them(tmp_path):
    path = tmp_path / "owned.safetensors"
    save_file(OLD, path)
    os.chown(path, 1234, 5678)
    save_file(NEW, path)
    info = os.stat(path)
    assert (info.st_uid, info.st_gid) == (1234, 5678)


def test_a_new_file_follows_the_umask(tmp_path):
    path = tmp_path / "new.safetensors"
    code = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        from safeweights.numpy import save_file
        os.umask(0o027)
        save_file({"w": np.zeros(2, dtype=np.float32)}, sys.argv[1])
        """
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    assert mode(path) == 0o640


def test_writing_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    store, links = tmp_path / "store", tmp_path / "links"
    store.mkdir()
    links.mkdir()
    target = store / "model.safetensors"
    save_file(OLD, target)
    os.chmod(target, 0o640)
    link = links / "model.safetensors"
    link.symlink_to(os.path.relpath(target, links))
    save_file(NEW, link)
    assert link.is_symlink()
    assert os.readlink(link) == os.path.relpath(target, links)
    np.testing.assert_array_equal(load_file(target)["w"], NEW["w"])
    assert mode(target) == 0o640
    # The temporary file was made beside the target (the rename is atomic there).
    assert sorted(os.listdir(store)) == ["model.safetensors"]
    assert sorted(os.listdir(links)) == ["model.safetensors"]


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    target = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    link.symlink_to("real.safetensors")
    save_file(NEW, link)
    assert link.is_symlink()
    np.testing.assert_array_equal(load_file(target)["w"], NEW["w"])


def test_a_hard_link_keeps_the_old_contents(tmp_path):
    path = tmp_path / "model.safetensors"
    other = tmp_path / "hardlink.safetensors"
    save_file(OLD, path)
    os.link(path, other)
    save_file(NEW, path)
    # The rename gives `path` a new inode; the other name keeps the old one.
    np.testing.assert_array_equal(load_file(other)["w"], OLD["w"])
    np.testing.assert_array_equal(load_file(path)["w"], NEW["w"])


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_a_writer_that_may_not_chown_still_saves_and_keeps_the_mode():
    # Not under pytest's private tmp_path: the other user must reach it.
    with tempfile.TemporaryDirectory() as shared:
        os.chmod(shared, 0o777)
        check_unprivileged_overwrite(os.path.join(shared, "model.safetensors"))


def check_unprivileged_overwrite(path):
    save_file(OLD, path)
    os.chmod(path, 0o604)
    code = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        from safeweights.numpy import save_file  # imported while the files are readable
        os.setgid(65534)
        os.setuid(65534)
        save_file({"w": np.arange(8, dtype=np.float32)}, sys.argv[1])
        """
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    info = os.stat(path)
    assert info.st_uid == 65534
    assert mode(path) == 0o604
    np.testing.assert_array_equal(load_file(path)["w"], NEW["w"])
