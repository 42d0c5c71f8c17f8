//! `charts/manman-host`: its templates rendered with the default values (and with the ingress
//! on) by a Go-template engine, each object parsed as YAML and checked; every value a template
//! uses exists in `values.yaml`.

use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::Path;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/manman-host");
const TEMPLATES: [&str; 5] = [
    "secret.yaml",
    "deployment.yaml",
    "service.yaml",
    "ingress.yaml",
    "migration-job.yaml",
];

fn yaml(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON value as a template value.
fn to_gtmpl(value: &Json) -> gtmpl::Value {
    match value {
        Json::Null => gtmpl::Value::Nil,
        Json::Bool(b) => (*b).into(),
        Json::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or_default().into(),
        },
        Json::String(s) => s.clone().into(),
        Json::Array(items) => items.iter().map(to_gtmpl).collect::<Vec<_>>().into(),
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), to_gtmpl(v)))
            .collect::<HashMap<_, _>>()
            .into(),
    }
}

/// Every object the chart renders with `values`, by kind (and name).
fn render(values: &Json) -> Vec<Json> {
    let chart = yaml(&Path::new(CHART).join("Chart.yaml"));
    let context = serde_json::json!({
        "Values": values,
        "Release": {"Name": "mm", "Namespace": "games", "Service": "Helm"},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
    });
    let mut objects = Vec::new();
    for template in TEMPLATES {
        let path = Path::new(CHART).join("templates").join(template);
        let text = std::fs::read_to_string(&path).expect("template");
        let rendered = gtmpl::template(&text, to_gtmpl(&context))
            .unwrap_or_else(|e| panic!("{template} does not render: {e}"));
        for document in rendered.split("\n---") {
            if document.trim().is_empty() {
                continue;
            }
            let object: Json = serde_yaml_ng::from_str(document)
                .unwrap_or_else(|e| panic!("{template} renders invalid YAML ({e}):\n{document}"));
            assert!(object["apiVersion"].is_string(), "{template}: {object}");
            objects.push(object);
        }
    }
    objects
}

fn one<'a>(objects: &'a [Json], kind: &str) -> &'a Json {
    let found: Vec<&Json> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}: {objects:#?}");
    found[0]
}

#[test]
fn the_default_values_render_a_host_with_probes_a_service_a_migration_job_and_its_secret() {
    let values = yaml(&Path::new(CHART).join("values.yaml"));
    let objects = render(&values);
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!(
            "{}:{}",
            values["image"]["repository"].as_str().expect("repository"),
            values["image"]["tag"].as_str().expect("tag")
        )
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env: HashMap<&str, &Json> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    for secret in [
        "MANMAN_POSTGRES_URL",
        "MANMAN_RABBITMQ_URL",
        "MANMAN_TOKEN_SIGNING_KEY",
    ] {
        assert_eq!(
            env[secret]["valueFrom"]["secretKeyRef"]["name"], values["secret"]["name"],
            "{secret} comes from the secret, never a plain value"
        );
    }
    assert_eq!(
        env["MANMAN_NO_MIGRATE"]["value"], "true",
        "the job migrates"
    );
    assert_eq!(env["APP_ENV"]["value"], "prod");
    let secret = one(&objects, "Secret");
    for key in [
        "postgres-url",
        "rabbitmq-url",
        "admin-token",
        "token-signing-key",
    ] {
        assert!(
            secret["stringData"][key].is_string(),
            "the secret holds {key}"
        );
    }
    let service = one(&objects, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"], 8000);
    let job = one(&objects, "Job");
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["manman-host", "--migrate-only"])
    );
    assert!(
        job["metadata"]["annotations"]["helm.sh/hook"]
            .as_str()
            .is_some_and(|h| h.contains("pre-upgrade"))
    );
    assert!(
        objects.iter().all(|o| o["kind"] != "Ingress"),
        "no ingress unless enabled"
    );
}

#[test]
fn an_enabled_ingress_routes_its_host_to_the_service() {
    let mut values = yaml(&Path::new(CHART).join("values.yaml"));
    values["ingress"]["enabled"] = true.into();
    values["migrations"]["job"] = false.into();
    let objects = render(&values);
    let ingress = one(&objects, "Ingress");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], values["ingress"]["host"]);
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "mm-manman-host"
    );
    assert!(
        objects.iter().all(|o| o["kind"] != "Job"),
        "no job when off"
    );
    let deployment = one(&objects, "Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"] == "MANMAN_NO_MIGRATE" && e["value"] == "false"),
        "the host migrates itself when there is no job"
    );
}

#[test]
fn every_value_a_template_uses_is_in_values_yaml() {
    let values = yaml(&Path::new(CHART).join("values.yaml"));
    for template in TEMPLATES {
        let text = std::fs::read_to_string(Path::new(CHART).join("templates").join(template))
            .expect("template");
        for (at, _) in text.match_indices(".Values.") {
            let path: String = text[at + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            let mut value = &values;
            for part in path.split('.') {
                value = &value[part];
            }
            assert!(
                !value.is_null(),
                "{template} uses .Values.{path}, which values.yaml does not set"
            );
        }
    }
}
