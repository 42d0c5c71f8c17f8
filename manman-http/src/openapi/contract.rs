//! What the annotations cannot say, added to the generated document so that it describes the
//! server as it is: the rules the server enforces (patterns, lengths, bounds, taken from the
//! same constants the server checks with), object schemas a serde `flatten` made into `allOf`
//! merged into one (an `allOf` member that refuses unknown fields would refuse every real
//! answer), the range of every integer, and the answers every operation can get whatever its
//! handler does (refused tokens, malformed or oversized requests, an unavailable store), as
//! shared `components/responses`.

use crate::http_limits::{MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_URI_BYTES};
use crate::problem::PROBLEM_JSON;
use manman_core::command::MAX_STDIN_LINE_BYTES;
use manman_core::config::{
    MAX_BACKOFF_MS, MAX_READY_TIMEOUT_S, MAX_RESTART_WINDOW_S, MAX_STOP_TIMEOUT_S,
};
use manman_core::instance::InstanceFilter;
use serde_json::{Map, Value, json};

/// A name of the catalogue, a token, a worker or a Steam branch (`check_name`); its length
/// (1 to 64) is `minLength`/`maxLength`.
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";

/// A path relative to a directory it stays in (`confined_path::check_relative`): not absolute,
/// no `..` component, no control characters nor the invisible marks that reorder text.
const RELATIVE_PATH_PATTERN: &str = r"^(?!/)(?!(?:[^/]*/)*\.\.(?:/|$))[^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]+$";

/// No NUL (arguments, environment values).
const NO_NUL_PATTERN: &str = r"^[^\u0000]*$";

/// One line: no line feed nor carriage return (a config's stop line).
const ONE_LINE_PATTERN: &str = r"^[^\n\r]*$";

/// One line without NUL (a console line sent to stdin).
const STDIN_LINE_PATTERN: &str = r"^[^\n\r\u0000]*$";

/// An environment variable's name (`game_env::is_env_name`).
const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// Makes the generated document true to the server (see the module's documentation).
pub(super) fn apply(doc: &mut Value) {
    let missing = apply_rules(doc);
    debug_assert!(
        missing.is_empty(),
        "rules for what is not in the document: {missing:?}"
    );
    flatten_all_of(doc);
    bound_integers(doc);
    plain_descriptions(doc);
    add_shared_responses(doc);
}

/// The rules of the server, as JSON Schema keywords merged into the schema at each pointer.
fn rules() -> Vec<(String, Value)> {
    let name = || json!({ "minLength": 1, "maxLength": 64, "pattern": NAME_PATTERN });
    let path = || json!({ "minLength": 1, "pattern": RELATIVE_PATH_PATTERN });
    let spec = "/components/schemas/ConfigSpec/properties";
    let stop = "/components/schemas/StopPolicy/properties";
    let restart = "/components/schemas/RestartPolicy/properties";
    vec![
        (
            "/components/schemas/NewGameServer/properties/name".to_owned(),
            name(),
        ),
        (
            "/components/schemas/ServerType/oneOf/0".to_owned(),
            json!({ "additionalProperties": false }),
        ),
        (
            "/components/schemas/ServerType/oneOf/0/properties/app_id".to_owned(),
            json!({ "minimum": 1 }),
        ),
        (
            "/components/schemas/ServerType/oneOf/1".to_owned(),
            json!({ "additionalProperties": false }),
        ),
        (
            "/components/schemas/ServerType/oneOf/1/properties/path".to_owned(),
            path(),
        ),
        (format!("{spec}/name"), name()),
        (format!("{spec}/executable"), path()),
        (format!("{spec}/working_dir"), path()),
        (
            format!("{spec}/args/items"),
            json!({ "pattern": NO_NUL_PATTERN }),
        ),
        (
            format!("{spec}/env"),
            json!({
                "propertyNames": { "type": "string", "pattern": ENV_NAME_PATTERN },
                "additionalProperties": { "type": "string", "pattern": NO_NUL_PATTERN },
            }),
        ),
        (
            format!("{spec}/ready_timeout_s"),
            json!({ "maximum": MAX_READY_TIMEOUT_S }),
        ),
        (
            format!("{spec}/ready_pattern"),
            json!({ "description": "A regular expression (Rust `regex` syntax) on console output; the server is \
                                    `running` when a line matches. Absent: at spawn. One that does not compile is 422." }),
        ),
        (
            format!("{stop}/stdin_line"),
            json!({ "pattern": ONE_LINE_PATTERN }),
        ),
        (
            format!("{stop}/timeout_s"),
            json!({ "maximum": MAX_STOP_TIMEOUT_S }),
        ),
        (
            format!("{stop}/signal_grace_s"),
            json!({ "maximum": MAX_STOP_TIMEOUT_S }),
        ),
        (
            format!("{restart}/window_s"),
            json!({ "minimum": 1, "maximum": MAX_RESTART_WINDOW_S }),
        ),
        (
            format!("{restart}/backoff_initial_ms"),
            json!({
                "minimum": 1,
                "maximum": MAX_BACKOFF_MS,
                "description": "First backoff delay; at most `backoff_max_ms` (else 422).",
            }),
        ),
        (
            format!("{restart}/backoff_max_ms"),
            json!({ "minimum": 1, "maximum": MAX_BACKOFF_MS }),
        ),
        (
            "/components/schemas/SteamOptions/properties/branch".to_owned(),
            name(),
        ),
        (
            "/components/schemas/SteamLogin/oneOf/1".to_owned(),
            json!({ "additionalProperties": false }),
        ),
        (
            "/components/schemas/StdinRequest/properties/line".to_owned(),
            json!({
                "maxLength": MAX_STDIN_LINE_BYTES,
                "pattern": STDIN_LINE_PATTERN,
                "description": format!(
                    "The line, without a newline: no line feed, carriage return or NUL, at most \
                     {MAX_STDIN_LINE_BYTES} bytes of UTF-8 (as many ASCII characters, fewer \
                     when they take more bytes; a longer one is 422)."
                ),
            }),
        ),
        (
            "/components/schemas/NewToken/properties/name".to_owned(),
            name(),
        ),
        (
            "/components/schemas/NewWorkerCredential/properties/worker_name".to_owned(),
            name(),
        ),
        (
            "/components/schemas/WorkerRegistration/properties/name".to_owned(),
            name(),
        ),
        (
            "/components/schemas/WorkerRegistration/properties/capacity".to_owned(),
            json!({ "minimum": 1 }),
        ),
        (
            "/components/schemas/Problem/properties/status".to_owned(),
            json!({ "minimum": 100, "maximum": 599 }),
        ),
        (
            "/components/schemas/Problem/properties/type".to_owned(),
            json!({ "default": "about:blank" }),
        ),
    ]
}

/// Merges each rule into its schema; returns the pointers that were not in the document.
fn apply_rules(doc: &mut Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (pointer, keywords) in rules() {
        let Some(Value::Object(schema)) = doc.pointer_mut(&pointer) else {
            missing.push(pointer);
            continue;
        };
        if let Value::Object(keywords) = keywords {
            schema.extend(keywords);
        }
    }
    // Query parameters: a page is 1 to `MAX_LIMIT` long; beyond is 422, never clamped.
    for operation in operations_mut(doc) {
        for parameter in parameters_mut(operation) {
            if parameter["in"] == "query"
                && parameter["name"] == "limit"
                && let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut)
            {
                schema.insert("minimum".to_owned(), json!(1));
                schema.insert("maximum".to_owned(), json!(InstanceFilter::MAX_LIMIT));
            }
        }
    }
    missing
}

/// Every operation object of the document.
fn operations_mut(doc: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(Value::as_object_mut)
}

/// The parameters of an operation.
fn parameters_mut(operation: &mut Map<String, Value>) -> impl Iterator<Item = &mut Value> {
    operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Replaces every `allOf` whose members are all plain object schemas (directly or through a
/// `$ref` to one) by one object schema with all their properties: closed
/// (`additionalProperties: false`) when a member was, since a member refusing unknown fields
/// would refuse the others' fields. What serde's `flatten` produces is exactly that one object.
fn flatten_all_of(doc: &mut Value) {
    // Components first, until nothing changes (a member may itself be an `allOf`).
    loop {
        let snapshot = doc["components"]["schemas"].clone();
        let mut changed = false;
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            for schema in schemas.values_mut() {
                changed |= flatten_in(schema, &snapshot);
            }
        }
        if !changed {
            break;
        }
    }
    let schemas = doc["components"]["schemas"].clone();
    if let Some(paths) = doc.get_mut("paths") {
        flatten_in(paths, &schemas);
    }
}

/// Flattens every mergeable `allOf` in `value`; whether any was.
fn flatten_in(value: &mut Value, schemas: &Value) -> bool {
    let mut changed = false;
    match value {
        Value::Object(object) => {
            if let Some(merged) = object
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|members| merge(members, schemas))
            {
                object.remove("allOf");
                for (key, value) in merged {
                    object.entry(key).or_insert(value);
                }
                changed = true;
            }
            for child in object.values_mut() {
                changed |= flatten_in(child, schemas);
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= flatten_in(item, schemas);
            }
        }
        _ => {}
    }
    changed
}

/// The one object schema `members` make, if each is a plain object schema.
fn merge(members: &[Value], schemas: &Value) -> Option<Map<String, Value>> {
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut closed = false;
    for member in members {
        let member = match member.get("$ref").and_then(Value::as_str) {
            Some(reference) => schemas.get(reference.strip_prefix("#/components/schemas/")?)?,
            None => member,
        };
        let object = member.as_object()?;
        let plain = object.keys().all(|key| {
            matches!(
                key.as_str(),
                "type" | "properties" | "required" | "additionalProperties" | "description"
            )
        });
        if !plain || object.get("type").is_some_and(|t| t != "object") {
            return None;
        }
        match object.get("additionalProperties") {
            None => {}
            Some(Value::Bool(false)) => closed = true,
            Some(_) => return None,
        }
        if let Some(Value::Object(more)) = object.get("properties") {
            properties.extend(more.clone());
        }
        for name in object
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !required.contains(name) {
                required.push(name.clone());
            }
        }
    }
    let mut merged = Map::new();
    merged.insert("type".to_owned(), json!("object"));
    if !required.is_empty() {
        merged.insert("required".to_owned(), Value::Array(required));
    }
    merged.insert("properties".to_owned(), Value::Object(properties));
    if closed {
        merged.insert("additionalProperties".to_owned(), json!(false));
    }
    Some(merged)
}

/// Gives every integer schema the range of its Rust type when it has no maximum: `int32` with
/// `minimum: 0` is a `u32`, `int64` with `minimum: 0` a `u64`, else `i32` or `i64` — so that no
/// client (nor a fuzzer) takes a number the server cannot hold for a valid one.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let integer = match object.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(types)) => types.iter().any(|t| t == "integer"),
                _ => false,
            };
            if integer && !object.contains_key("maximum") {
                let unsigned = object
                    .get("minimum")
                    .and_then(Value::as_i64)
                    .is_some_and(|minimum| minimum >= 0);
                let (min, max) = match (object.get("format").and_then(Value::as_str), unsigned) {
                    (Some("int32"), true) => (json!(0), json!(u32::MAX)),
                    (Some("int32"), false) => (json!(i32::MIN), json!(i32::MAX)),
                    (_, true) => (json!(0), json!(u64::MAX)),
                    (_, false) => (json!(i64::MIN), json!(i64::MAX)),
                };
                object.entry("minimum").or_insert(min);
                object.insert("maximum".to_owned(), max);
            }
            for child in object.values_mut() {
                bound_integers(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// Rustdoc links in descriptions (``[`Instance`](crate::instance::Instance)``,
/// ``[`crate::game_env`]``) read as their text (`` `Instance` ``).
fn plain_descriptions(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(description)) = object.get_mut("description") {
                *description = without_rustdoc_links(description);
            }
            for child in object.values_mut() {
                plain_descriptions(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plain_descriptions),
        _ => {}
    }
}

/// ``[`X`](path)`` and ``[`X`]`` become `` `X` ``.
fn without_rustdoc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find("`]") else {
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str(&after[..=end]);
        rest = &after[end + 2..];
        if let Some(target) = rest.strip_prefix('(')
            && let Some(close) = target.find(')')
            && !target[..close].contains(char::is_whitespace)
        {
            rest = &target[close + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// A shared answer: its status, its component name, what it means.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: String,
    header: Option<(&'static str, &'static str)>,
}

fn shared_responses() -> Vec<Shared> {
    let shared = |status, name, description: &str| Shared {
        status,
        name,
        description: description.to_owned(),
        header: None,
    };
    vec![
        shared(
            "400",
            "BadRequest",
            "malformed: the body is not JSON, or a path or query parameter does not parse (the \
             detail says which)",
        ),
        Shared {
            header: Some((
                "WWW-Authenticate",
                "`Bearer`: send `Authorization: Bearer <token>`",
            )),
            ..shared(
                "401",
                "Unauthorized",
                "no valid bearer token: missing, unknown, revoked or expired (the detail says \
                 which)",
            )
        },
        shared(
            "403",
            "Forbidden",
            "the token may not do this: its scope is too narrow, or it is a worker token on an \
             operator route (or the other way round); the detail names the scope needed",
        ),
        shared("404", "NotFound", "it does not exist"),
        shared(
            "408",
            "RequestTimeout",
            "the body did not arrive within the body timeout (`MANMAN_HTTP_BODY_TIMEOUT_MS`, \
             30 s by default); the connection is closed",
        ),
        Shared {
            description: format!("the body is over {} KiB", crate::api::BODY_LIMIT / 1024),
            ..shared("413", "ContentTooLarge", "")
        },
        Shared {
            description: format!("the request URI (path and query) is over {MAX_URI_BYTES} bytes"),
            ..shared("414", "UriTooLong", "")
        },
        shared(
            "415",
            "UnsupportedMediaType",
            "the body is not sent as `Content-Type: application/json`",
        ),
        shared(
            "422",
            "UnprocessableContent",
            "the request is well formed but a field does not fit: a wrong type, a missing or \
             unknown field, a value out of range or against a rule (`errors` names each field)",
        ),
        Shared {
            description: format!(
                "the header fields are over {MAX_HEADER_BYTES} bytes in all, or more than \
                 {MAX_HEADER_FIELDS} of them"
            ),
            ..shared("431", "HeaderFieldsTooLarge", "")
        },
        shared(
            "500",
            "InternalError",
            "the host failed to handle the request (its log says why, under the request's \
             `x-request-id`)",
        ),
        Shared {
            header: Some(("Retry-After", "seconds to wait before trying again")),
            ..shared(
                "503",
                "Unavailable",
                "the store or the message bus is unavailable; retry later",
            )
        },
    ]
}

/// Adds to each operation the shared answers it can get, where it does not describe them
/// itself: every operation 414, 431 and (but `/healthz`) 500 and 503; one with a token 401
/// and 403; one with a JSON body 400, 408, 413, 415 and 422; one with path parameters 400 and
/// 404; one with query parameters 400 and 422 (a value out of range).
fn add_shared_responses(doc: &mut Value) {
    let shared = shared_responses();
    let mut components = Map::new();
    for answer in &shared {
        let mut response = json!({
            "description": answer.description,
            "content": { PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } },
        });
        if let Some((name, description)) = answer.header {
            response["headers"] = json!({
                name: { "description": description, "required": true, "schema": { "type": "string" } }
            });
        }
        components.insert(answer.name.to_owned(), response);
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut().filter_map(Value::as_object_mut) {
            let in_ = |place: &str| {
                operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
            };
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let body = operation.contains_key("requestBody");
            let (path_params, query_params) = (in_("path"), in_("query"));
            let mut statuses = vec!["414", "431"];
            if path != "/healthz" {
                statuses.extend(["500", "503"]);
            }
            if secured {
                statuses.extend(["401", "403"]);
            }
            if body {
                statuses.extend(["400", "408", "413", "415", "422"]);
            }
            if path_params {
                statuses.extend(["400", "404"]);
            }
            if query_params {
                statuses.extend(["400", "422"]);
            }
            let responses = operation
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            let Some(responses) = responses else {
                continue;
            };
            for answer in &shared {
                if statuses.contains(&answer.status) && !responses.contains_key(answer.status) {
                    responses.insert(
                        answer.status.to_owned(),
                        json!({ "$ref": format!("#/components/responses/{}", answer.name) }),
                    );
                }
            }
            sort_responses(responses);
        }
    }
    if let Some(doc_components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        doc_components.insert("responses".to_owned(), Value::Object(components));
    }
}

/// Responses by status code, in order.
fn sort_responses(responses: &mut Map<String, Value>) {
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(sorted);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustdoc_links_read_as_their_text() {
        assert_eq!(
            without_rustdoc_links(
                "Identity of an [`Instance`](crate::instance::Instance): one run"
            ),
            "Identity of an `Instance`: one run"
        );
        assert_eq!(
            without_rustdoc_links("see [`crate::game_env`]."),
            "see `crate::game_env`."
        );
        assert_eq!(without_rustdoc_links("a [`b` c"), "a [`b` c");
        assert_eq!(without_rustdoc_links("plain"), "plain");
    }

    #[test]
    fn an_all_of_of_objects_is_one_object_closed_when_a_member_was() {
        let schemas = json!({
            "Spec": {
                "type": "object",
                "required": ["name"],
                "properties": { "name": { "type": "string" } },
                "additionalProperties": false,
            }
        });
        let mut config = json!({
            "allOf": [
                { "$ref": "#/components/schemas/Spec", "description": "spec" },
                { "type": "object", "required": ["id"], "properties": { "id": { "type": "integer" } } },
            ],
            "description": "a config",
        });
        assert!(flatten_in(&mut config, &schemas));
        assert_eq!(
            config,
            json!({
                "type": "object",
                "description": "a config",
                "required": ["name", "id"],
                "properties": { "name": { "type": "string" }, "id": { "type": "integer" } },
                "additionalProperties": false,
            })
        );
        let mut mixed = json!({ "allOf": [{ "oneOf": [] }, { "type": "object" }] });
        assert!(!flatten_in(&mut mixed, &schemas));
    }
}
