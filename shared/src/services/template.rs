//! `{{name}}` placeholders in batch texts, filled per recipient.
//!
//! Both the scan and the rendering are linear in the text: a placeholder's inside is looked
//! for only within [`MAX_INSIDE`] bytes of its `{{`, so a text of many `{{` without a
//! `}}` costs one pass, not one per `{{`; and the rendered text stops growing at the caller's
//! limit, so a large value repeated by many placeholders cannot blow up memory.

use std::collections::BTreeMap;

/// The most bytes between `{{` and `}}`: a name (at most 64) with room for spaces.
pub const MAX_INSIDE: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the text uses {{{{{0}}}}} but the recipient has no variable {0:?}")]
    MissingVariable(String),
    #[error("with its variables filled in, the text is longer than {0} bytes")]
    TooLong(usize),
}

/// The next placeholder in `text`: where its `{{` starts, where its `}}` ends, and its name.
fn next_placeholder(text: &str) -> Option<(usize, usize, &str)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("{{") {
        let start = from + found;
        let inside = &text[start + 2..];
        let window = &inside.as_bytes()[..inside.len().min(MAX_INSIDE + 2)];
        if let Some(end) = window.windows(2).position(|w| w == b"}}") {
            let name = inside[..end].trim();
            if is_name(name) {
                return Some((start, start + 2 + end + 2, name));
            }
        }
        from = start + 2;
    }
    None
}

/// Replaces each `{{ name }}` (spaces optional; names of ASCII letters, digits and `_`)
/// with the recipient's value. Braces that do not form a placeholder are left as they are.
/// A result longer than `max_bytes` is refused as soon as it grows past it.
pub fn render(
    template: &str,
    variables: &BTreeMap<String, String>,
    max_bytes: usize,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len().min(max_bytes));
    let mut rest = template;
    let push = |out: &mut String, piece: &str| {
        if out.len() + piece.len() > max_bytes {
            return Err(TemplateError::TooLong(max_bytes));
        }
        out.push_str(piece);
        Ok(())
    };
    while let Some((start, end, name)) = next_placeholder(rest) {
        push(&mut out, &rest[..start])?;
        let value = variables
            .get(name)
            .ok_or_else(|| TemplateError::MissingVariable(name.to_owned()))?;
        push(&mut out, value)?;
        rest = &rest[end..];
    }
    push(&mut out, rest)?;
    Ok(out)
}

/// The names of the text's placeholders, each once, in the order they first appear.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = template;
    while let Some((_, end, name)) = next_placeholder(rest) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// Whether the text has any placeholder at all (a batch without them renders once).
pub fn has_placeholders(template: &str) -> bool {
    next_placeholder(template).is_some()
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_placeholders() {
        let v = vars(&[("name", "Олена"), ("code", "4821")]);
        assert_eq!(
            render("{{name}}, ваш код {{ code }}.", &v, 1000).unwrap(),
            "Олена, ваш код 4821."
        );
        assert!(has_placeholders("Hi {{name}}"));
        assert!(!has_placeholders("Hi {name} {{ }} {{a-b}}"));
    }

    #[test]
    fn missing_variables_are_reported_and_stray_braces_kept() {
        assert_eq!(
            render("Hi {{name}}", &vars(&[]), 1000),
            Err(TemplateError::MissingVariable("name".into()))
        );
        assert_eq!(
            render("{{ not a name }} {{", &vars(&[]), 1000).unwrap(),
            "{{ not a name }} {{"
        );
        assert_eq!(
            render("{{{{x}}}}", &vars(&[("x", "1")]), 1000).unwrap(),
            "{{1}}"
        );
    }

    #[test]
    fn an_inside_is_looked_for_near_its_braces_only() {
        let far = format!("{{{{{}x}}}}", " ".repeat(MAX_INSIDE));
        assert!(!has_placeholders(&far), "too much room between the braces");
        let near = format!("{{{{{}x}}}}", " ".repeat(MAX_INSIDE - 2));
        assert!(has_placeholders(&near));
        // Many openings and no closing: one pass, nothing found.
        assert!(!has_placeholders(&"{{".repeat(100_000)));
        let v = vars(&[("x", "1")]);
        let many = "{{".repeat(100_000);
        assert_eq!(render(&many, &v, 400_000).unwrap(), many);
    }

    #[test]
    fn the_result_stops_at_the_limit() {
        let v = vars(&[("big", &"я".repeat(1000))]);
        assert_eq!(
            render(&"{{big}}".repeat(100), &v, 16 * 1024),
            Err(TemplateError::TooLong(16 * 1024))
        );
        assert_eq!(render("{{big}}", &v, 2000).unwrap().len(), 2000);
    }
}
