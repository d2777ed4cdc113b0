//! Chat templates stored in GGUF metadata (`tokenizer.chat_template` and
//! `tokenizer.chat_template.<name>`): Jinja text that chat front-ends
//! render. To this crate they are data and never evaluated; a front-end
//! that renders one with an unsandboxed Jinja can be made to run code
//! (llama-cpp-python's CVE-2024-34359), so constructs that only such
//! escapes use are worth flagging.
#![forbid(unsafe_code)]

use crate::{Gguf, Value};

/// Constructs real chat templates never need and template injections do:
/// Python internals reached through attributes, and imports.
const ESCAPES: [&str; 12] = [
    "__class__",
    "__globals__",
    "__builtins__",
    "__subclasses__",
    "__mro__",
    "__base__",
    "__init__",
    "__import__",
    "import ",
    "os.",
    "subprocess",
    "popen",
];

/// `(key, template)` for every chat template in the metadata.
pub fn chat_templates<'a>(gguf: &'a Gguf<'a>) -> Vec<(&'a str, &'a str)> {
    gguf.metadata()
        .iter()
        .filter(|(key, _)| {
            *key == "tokenizer.chat_template" || key.starts_with("tokenizer.chat_template.")
        })
        .filter_map(|(key, value)| match value {
            Value::String(text) => Some((*key, *text)),
            _ => None,
        })
        .collect()
}

/// The escape constructs found in `template` (case-insensitive), in the
/// order of [`ESCAPES`]; empty for an ordinary template.
pub fn template_escapes(template: &str) -> Vec<&'static str> {
    let lower = template.to_ascii_lowercase();
    ESCAPES
        .iter()
        .copied()
        .filter(|needle| lower.contains(needle))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_templates_have_no_escapes_and_injections_do() {
        let chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}";
        assert!(template_escapes(chatml).is_empty());
        let evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.popen('id').read() }}";
        let found = template_escapes(evil);
        for needle in [
            "__class__",
            "__mro__",
            "__subclasses__",
            "__globals__",
            "popen",
        ] {
            assert!(found.contains(&needle), "{needle}: {found:?}");
        }
    }
}
