//! The one edit `install` makes to OpenCode's `opencode.json` / `opencode.jsonc`: setting
//! `provider.venice.options.baseURL`, keeping everything else byte for byte (comments, trailing
//! commas, order, indentation, other providers).
//!
//! Owns the edit on jsonc-parser's concrete syntax tree (CST), which keeps every comment and
//! piece of whitespace. Objects on the way (`provider`, `venice`, `options`) are created when
//! missing; a value of the wrong type is an error, never silently replaced.

use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use jsonc_parser::ParseOptions;

/// Why the file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsoncError {
    #[error("not valid JSON/JSONC: {0}")]
    Parse(String),
    #[error("the top level is not an object")]
    NotAnObject,
    #[error("`{0}` is not an object; fix or remove it, then run install again")]
    NotAnObjectAt(String),
}

/// The `baseURL` currently configured for the `venice` provider, if any.
pub fn venice_base_url(text: &str) -> Result<Option<String>, JsoncError> {
    let root = parse(text)?;
    let Some(obj) = root.object_value() else {
        return Ok(None);
    };
    let url = obj
        .object_value("provider")
        .and_then(|p| p.object_value("venice"))
        .and_then(|v| v.object_value("options"))
        .and_then(|o| o.get("baseURL"))
        .and_then(|p| p.value())
        .and_then(|v| v.as_string_lit())
        .and_then(|s| s.decoded_value().ok());
    Ok(url)
}

/// `text` with `provider.venice.options.baseURL` set to `url`; unchanged when it already is.
pub fn set_venice_base_url(text: &str, url: &str) -> Result<String, JsoncError> {
    if venice_base_url(text)?.as_deref() == Some(url) {
        return Ok(text.to_owned());
    }
    let blank = text.trim().is_empty();
    let source = if blank { "{\n}\n" } else { text };
    let root = parse(source)?;
    let obj = match root.value() {
        None => root.object_value_or_set(),
        Some(_) => root.object_value().ok_or(JsoncError::NotAnObject)?,
    };
    let provider = child(&obj, "provider", "provider")?;
    let venice = child(&provider, "venice", "provider.venice")?;
    let options = child(&venice, "options", "provider.venice.options")?;
    match options.get("baseURL") {
        Some(prop) => prop.set_value(CstInputValue::String(url.to_owned())),
        None => {
            options.append("baseURL", CstInputValue::String(url.to_owned()));
        }
    }
    Ok(root.to_string())
}

fn child(parent: &CstObject, name: &str, path: &str) -> Result<CstObject, JsoncError> {
    parent
        .object_value_or_create(name)
        .ok_or_else(|| JsoncError::NotAnObjectAt(path.to_owned()))
}

fn parse(text: &str) -> Result<CstRootNode, JsoncError> {
    CstRootNode::parse(text, &ParseOptions::default()).map_err(|e| JsoncError::Parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:8765/api/v1";

    #[test]
    fn only_the_base_url_changes_and_comments_stay() {
        let text = r#"{
  // my settings
  "$schema": "https://opencode.ai/config.json",
  /* providers */
  "provider": {
    "anthropic": { "options": { "timeout": 5000 } }, // keep me
    "venice": {
      "options": {
        "baseURL": "https://api.venice.ai/api/v1", // old
        "apiKey": "{env:VENICE_API_KEY}",
      },
    },
  },
}
"#;
        let out = set_venice_base_url(text, URL).expect("edits");
        let expected = text.replace("https://api.venice.ai/api/v1", URL);
        assert_eq!(out, expected);
        assert_eq!(set_venice_base_url(&out, URL).expect("again"), out);
    }

    #[test]
    fn missing_objects_are_created() {
        let out = set_venice_base_url("{\n  \"model\": \"venice/x\" // m\n}\n", URL).unwrap();
        assert!(out.contains("// m"), "{out}");
        assert_eq!(venice_base_url(&out).unwrap().as_deref(), Some(URL));
        let out = set_venice_base_url("", URL).unwrap();
        assert_eq!(venice_base_url(&out).unwrap().as_deref(), Some(URL));
        let out = set_venice_base_url("// only a comment\n", URL).unwrap();
        assert_eq!(venice_base_url(&out).unwrap().as_deref(), Some(URL));
    }

    #[test]
    fn wrong_shapes_are_errors_not_overwrites() {
        assert_eq!(
            set_venice_base_url("{\"provider\": 3}", URL),
            Err(JsoncError::NotAnObjectAt("provider".into()))
        );
        assert_eq!(
            set_venice_base_url("[1]", URL),
            Err(JsoncError::NotAnObject)
        );
        assert!(matches!(
            set_venice_base_url("{\"a\": ", URL),
            Err(JsoncError::Parse(_))
        ));
    }
}
