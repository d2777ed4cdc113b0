//! Classifies globals: allowed (safe), known to run code or reach the OS
//! (dangerous), or anything else (suspicious). The allow-list decides
//! safety; the deny-list below only sharpens the verdict for the report.

use super::compat::fix_import;
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
    // Execution gadgets found outside the first list (2024-2026 bypasses).
    "numpy.f2py",
    "numpy.distutils",
    "torch.utils.collect_env",
    "torch.utils.cpp_extension",
    "torch.utils.model_zoo",
    "torch.package",
    "_xxsubinterpreters",
    "_interpreters",
    "_xxinterpchannels",
    "_interpchannels",
    "concurrent",
    "doctest",
    "idlelib",
    "imp",
    "tkinter",
    "_tkinter",
    "sqlite3",
    "_sqlite3",
    "xmlrpc",
    "socketserver",
    "wsgiref",
    "tarfile",
    "zipfile",
    "fileinput",
    "_winapi",
    "msvcrt",
    "winreg",
    "_winreg",
];

/// Attribute names that, in many standard modules, are a re-exported
/// module (`shlex.os`, `tempfile._os`, `gzip.builtins`): importing one
/// hands the pickle that module, whose functions a `methodcaller` or
/// `getattr` gadget then calls.
const MODULE_ALIASES: &[&str] = &[
    "os",
    "sys",
    "subprocess",
    "builtins",
    "__builtins__",
    "importlib",
    "shutil",
    "socket",
    "posix",
    "nt",
    "io",
    "pickle",
    "marshal",
    "ctypes",
    "runpy",
    "pty",
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
    "_operator.methodcaller",
    "_operator.attrgetter",
    "_operator.itemgetter",
    "functools.partial",
    "functools.reduce",
    "_functools.partial",
    "_functools.reduce",
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
    fix_import(module, "").0
}

/// The verdict for `module.name`, and why. A Python 2 name is judged both
/// as written and as CPython's unpickler renames it; the worse one counts.
pub(crate) fn classify(module: &str, name: &str) -> (Verdict, &'static str) {
    let (fixed_module, fixed_name) = fix_import(module, name);
    let as_written = classify_one(module, name);
    let fixed = classify_one(fixed_module, fixed_name);
    if fixed.0 > as_written.0 || (fixed.0 == Verdict::Safe && as_written.0 != Verdict::Dangerous) {
        fixed
    } else {
        as_written
    }
}

fn classify_one(module: &str, name: &str) -> (Verdict, &'static str) {
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
    let is_alias = |part: &str| {
        MODULE_ALIASES.contains(&part) || MODULE_ALIASES.contains(&part.trim_start_matches('_'))
    };
    if is_alias(name) || module.split('.').skip(1).any(is_alias) {
        return (
            Verdict::Dangerous,
            "a module re-exported as an attribute (like shlex.os): its functions are one call away",
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
            ("numpy.f2py.crackfortran", "myeval"),
            ("_operator", "methodcaller"),
            ("shlex", "os"),
            ("tempfile", "_os"),
            ("torch.utils.collect_env", "run"),
            ("_xxsubinterpreters", "run_string"),
            ("commands", "getoutput"),
            ("__builtin__", "reduce"),
            ("shlex.os", "system"),
            ("shlex", "os.system"),
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
