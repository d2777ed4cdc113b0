//! Tensor name patterns: shell-style globs matched against the whole name.
//!
//! `*` matches any run of characters (dots included), `?` exactly one
//! character; everything else matches itself. Globs rather than regexes
//! because tensor names are full of dots, which a regex would treat as
//! wildcards: `model.layers.*.mlp.*` means what it says.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        Glob {
            pattern: pattern.chars().collect(),
        }
    }

    /// True when the glob matches all of `name`.
    pub fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        // Iterative matcher with single-star backtracking: linear in
        // practice and never recursive, whatever the pattern.
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some('?') => {
                    p += 1;
                    t += 1;
                }
                Some(&c) if c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pattern[p..].iter().all(|&c| c == '*')
    }
}

/// A selection of tensors: names matching any include glob (all names when
/// there is none) and no exclude glob.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

impl Selection {
    /// Builds a selection from include and exclude patterns.
    pub fn new(include: &[String], exclude: &[String]) -> Self {
        Selection {
            include: include.iter().map(|p| Glob::new(p)).collect(),
            exclude: exclude.iter().map(|p| Glob::new(p)).collect(),
        }
    }

    /// True when `name` is selected.
    pub fn contains(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(name)))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = Glob::new("model.layers.*.mlp.*");
        assert!(g.matches("model.layers.0.mlp.up.weight"));
        assert!(!g.matches("model.layers.0.attn.q.weight"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a?c").matches("abc"));
        assert!(!Glob::new("a?c").matches("ac"));
        assert!(Glob::new("*.bias").matches("x.y.bias"));
        assert!(!Glob::new("*.bias").matches("x.bias.y"));
        assert!(Glob::new("exact").matches("exact"));
        assert!(!Glob::new("exact").matches("exactly"));
    }

    #[test]
    fn selections() {
        let s = Selection::new(&["*.weight".into()], &["*norm*".into()]);
        assert!(s.contains("fc.weight"));
        assert!(!s.contains("norm.weight"));
        assert!(!s.contains("fc.bias"));
        assert!(Selection::default().contains("anything"));
    }
}
