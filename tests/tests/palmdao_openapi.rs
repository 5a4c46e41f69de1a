//! The OpenAPI document as the real palmdao serves it: every documented
//! operation is routed, and what the server answers a stranger (no session,
//! an empty body, ids that do not exist) is among the responses documented
//! for that operation, as a problem body. (That the router serves nothing
//! undocumented is checked in palmdao's own unit tests, which can read the
//! router.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palm_tests::palmdao::Palmdao;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_answers_as_documented() {
    let palmdao = Palmdao::start().await;
    let (status, document) = palmdao.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 19, "{paths:?}");

    let mut checked = 0;
    for (template, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let path = template
                .replace("{id}", &Uuid::now_v7().to_string())
                .replace("{slug}", "no-such-community");
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let reply = palmdao
                .call(method.clone(), &path, None, body.as_ref())
                .await;
            let documented: Vec<&String> =
                operation["responses"].as_object().unwrap().keys().collect();
            assert!(
                documented.contains(&&reply.status.to_string()),
                "{method} {path} answered {} {}, documented: {documented:?}",
                reply.status,
                reply.body
            );
            if reply.status >= 400 {
                assert_eq!(
                    reply.headers["content-type"], "application/problem+json",
                    "{method} {path}"
                );
                assert_ne!(reply.code(), "no_route", "{method} {path} is not routed");
                assert!(!reply.code().is_empty(), "{method} {path}: {}", reply.body);
            }
            let needs_session = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if needs_session {
                assert_eq!(reply.status, 401, "{method} {path} without a session");
            }
            checked += 1;
        }
    }
    assert!(checked >= 23, "operations checked: {checked}");

    // Swagger UI reads the same document: the page loads its initializer
    // from palmdao itself (no inline script under the page's CSP), and the
    // initializer points at /openapi.json.
    let http = palm_service::http::client();
    let get_text = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", palmdao.base);
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let page = get_text("/docs".to_owned()).await;
    assert!(page.contains("swagger-ui"), "{page}");
    let initializer = page
        .split('"')
        .find(|part| part.starts_with("/docs/assets/palm-docs"))
        .unwrap_or_else(|| panic!("no initializer script in {page}"))
        .to_owned();
    assert!(get_text(initializer).await.contains("/openapi.json"));

    // Anything else is a problem too.
    let (status, body): (u16, Value) = palmdao.get("/v2/nothing", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("no_route")));
    palmdao.stop().await;
}
