"""Every public function, class and method of the package has a docstring
(what `help()` and editors show)."""

import importlib
import inspect
import pkgutil

import pytest

import safeweights
import safeweights.integrations


def public_modules():
    names = ["safeweights", "safeweights.torch", "safeweights.numpy", "safeweights.gguf", "safeweights.dcp"]
    names += [
        f"safeweights.integrations.{m.name}"
        for m in pkgutil.iter_modules(safeweights.integrations.__path__)
        if not m.name.startswith("_")
    ]
    return names


def ours(obj):
    return str(getattr(obj, "__module__", None) or "").startswith("safeweights")


def undocumented(module):
    """The public callables of `module` (and the public methods of its
    classes) that have no docstring. Methods may inherit theirs, as
    `inspect.getdoc` does (the DCP storage classes implement torch's
    documented interface)."""
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    missing = []
    for name in names:
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not callable(obj) or not ours(obj):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for member in vars(obj):
                if member.startswith("_") or not callable(getattr(obj, member, None)):
                    continue
                if not (inspect.getdoc(getattr(obj, member)) or "").strip():
                    missing.append(f"{name}.{member}")
    return missing


@pytest.mark.parametrize("name", public_modules())
def test_every_public_callable_has_a_docstring(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    assert undocumented(module) == [], name


def test_the_check_sees_an_undocumented_function_and_method():
    # The test above must fail when a docstring is missing.
    import types

    module = types.ModuleType("safeweights.fake")

    def bare():
        pass

    class Documented:
        """Documented."""

        def method(self):
            pass

    bare.__module__ = Documented.__module__ = "safeweights.fake"
    module.bare, module.Documented = bare, Documented
    assert undocumented(module) == ["Documented.method", "bare"]
