//! Classifies globals: allowed (safe), known to run code or reach the OS
//! (dangerous), or anything else (suspicious). The allow-list decides
//! safety; the deny-list below only sharpens the verdict for the report.

use super::Verdict;
use crate::pickle::is_allowed_global;

/// Modules where every attribute is treated as dangerous.
const DANGEROUS_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "shutil",
    "socket",
    "_socket",
    "ssl",
    "pty",
    "runpy",
    "importlib",
    "pkgutil",
    "webbrowser",
    "code",
    "codeop",
    "ctypes",
    "_ctypes",
    "marshal",
    "types",
    "multiprocessing",
    "_multiprocessing",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "commands",
    "popen2",
    "platform",
    "pdb",
    "bdb",
    "timeit",
    "cProfile",
    "profile",
    "pydoc",
    "trace",
    "_osx_support",
    "_aix_support",
    "uuid",
    "imaplib",
    "smtplib",
    "ftplib",
    "poplib",
    "telnetlib",
    "nntplib",
    "http",
    "urllib",
    "urllib2",
    "requests",
    "_pyrepl",
    "test",
    "pip",
    "setuptools",
    "distutils",
    "ensurepip",
    "venv",
    "site",
    "zipimport",
    "inspect",
    "signal",
    "_thread",
    "thread",
    "threading",
    "asyncio",
    "tempfile",
    "io",
    "_io",
    "fcntl",
    "mmap",
    "resource",
    "gc",
    "sysconfig",
    "logging",
    "torch.serialization",
    "torch.jit",
    "torch._C",
    "torch.hub",
    "torch.ops",
    "torch._dynamo",
    "torch._inductor",
    "numpy.testing",
    "builtins.__loader__",
];

/// Single dangerous attributes in otherwise harmless modules.
const DANGEROUS_GLOBALS: &[&str] = &[
    "builtins.eval",
    "builtins.exec",
    "builtins.execfile",
    "builtins.compile",
    "builtins.open",
    "builtins.__import__",
    "builtins.getattr",
    "builtins.setattr",
    "builtins.delattr",
    "builtins.globals",
    "builtins.locals",
    "builtins.vars",
    "builtins.input",
    "builtins.breakpoint",
    "builtins.apply",
    "builtins.file",
    "builtins.reload",
    "builtins.memoryview",
    "builtins.help",
    "operator.methodcaller",
    "operator.attrgetter",
    "operator.itemgetter",
    "functools.partial",
    "functools.reduce",
    "torch.storage._load_from_bytes",
    "torch.load",
    "torch.save",
    "numpy.load",
    "numpy.loads",
    "numpy.lib.npyio.load",
    "numpy.ctypeslib.load_library",
    "collections._collections_abc.__getattribute__",
    "copyreg._reconstructor",
];

/// Globals whose argument is itself a pickle to be loaded.
const LOADS_LIKE: &[&str] = &[
    "pickle.loads",
    "pickle.load",
    "_pickle.loads",
    "_pickle.load",
    "cPickle.loads",
    "dill.loads",
    "torch.storage._load_from_bytes",
    "torch.serialization.load",
    "torch.load",
    "numpy.loads",
    "joblib.load",
    "cloudpickle.loads",
];

fn normalize(module: &str) -> &str {
    if module == "__builtin__" {
        "builtins"
    } else {
        module
    }
}

/// The verdict for `module.name`, and why.
pub(crate) fn classify(module: &str, name: &str) -> (Verdict, &'static str) {
    let module = normalize(module);
    if is_allowed_global(module, name) {
        return (Verdict::Safe, "allowed: needed to rebuild tensors");
    }
    let full = format!("{module}.{name}");
    let in_module =
        |m: &&str| module == *m || module.strip_prefix(*m).is_some_and(|r| r.starts_with('.'));
    if DANGEROUS_GLOBALS.contains(&full.as_str()) || DANGEROUS_MODULES.iter().any(in_module) {
        return (
            Verdict::Dangerous,
            "can execute code or reach the operating system when loaded",
        );
    }
    if name.starts_with("__") || name.contains('.') {
        return (
            Verdict::Dangerous,
            "reaches dunder or nested attributes, a common gadget",
        );
    }
    (
        Verdict::Suspicious,
        "not on the allow-list of tensor-rebuilding globals",
    )
}

/// Whether calling `module.name` unpickles its (bytes) argument.
pub(crate) fn is_loads_like(module: &str, name: &str) -> bool {
    let full = format!("{}.{name}", normalize(module));
    LOADS_LIKE.contains(&full.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(
            classify("torch._utils", "_rebuild_tensor_v2").0,
            Verdict::Safe
        );
        assert_eq!(classify("__builtin__", "set").0, Verdict::Safe);
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("__builtin__", "exec"),
            ("subprocess", "Popen"),
            ("os.path", "join"),
            ("pkgutil", "resolve_name"),
            ("torch.serialization", "load"),
            ("torch.storage", "_load_from_bytes"),
            ("operator", "methodcaller"),
            ("numpy.testing._private.utils", "runstring"),
            ("builtins", "__import__"),
        ] {
            assert_eq!(classify(m, n).0, Verdict::Dangerous, "{m}.{n}");
        }
        // On the reader's allow-list (torch's, plus numpy's data), so never dangerous.
        for (m, n) in [
            ("numpy.core.multiarray", "_reconstruct"),
            ("torch.serialization", "_get_layout"),
            ("collections", "Counter"),
            ("torch", "device"),
        ] {
            assert_eq!(classify(m, n).0, Verdict::Safe, "{m}.{n}");
        }
        assert_eq!(classify("osmosis", "run").0, Verdict::Suspicious);
        assert!(is_loads_like("_pickle", "loads"));
        assert!(!is_loads_like("os", "system"));
    }
}
