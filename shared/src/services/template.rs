//! `{{name}}` placeholders in batch texts, filled per recipient.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the text uses {{{{{0}}}}} but the recipient has no variable {0:?}")]
    MissingVariable(String),
}

/// Replaces each `{{ name }}` (spaces optional; names of ASCII letters, digits and `_`)
/// with the recipient's value. Braces that do not form a placeholder are left as they are.
pub fn render(
    template: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if is_name(after[..end].trim()) => {
                let name = after[..end].trim();
                let value = variables
                    .get(name)
                    .ok_or_else(|| TemplateError::MissingVariable(name.to_owned()))?;
                out.push_str(value);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether the text has any placeholder at all (a batch without them renders once).
pub fn has_placeholders(template: &str) -> bool {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        if let Some(end) = after.find("}}")
            && is_name(after[..end].trim())
        {
            return true;
        }
        rest = after;
    }
    false
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
            render("{{name}}, ваш код {{ code }}.", &v).unwrap(),
            "Олена, ваш код 4821."
        );
        assert!(has_placeholders("Hi {{name}}"));
        assert!(!has_placeholders("Hi {name} {{ }} {{a-b}}"));
    }

    #[test]
    fn missing_variables_are_reported_and_stray_braces_kept() {
        assert_eq!(
            render("Hi {{name}}", &vars(&[])),
            Err(TemplateError::MissingVariable("name".into()))
        );
        assert_eq!(
            render("{{ not a name }} {{", &vars(&[])).unwrap(),
            "{{ not a name }} {{"
        );
        assert_eq!(render("{{{{x}}}}", &vars(&[("x", "1")])).unwrap(), "{{1}}");
    }
}
