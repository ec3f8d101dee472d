//! The billing routes refuse anything but the master key, and a refusal
//! changes nothing.

use super::chat;
use crate::common::admin::{CreatedToken, id_of};
use crate::common::{MASTER_KEY, TestGateway};
use crate::on_both_backends;
use awc::http::Method;
use serde_json::{Value, json};
use switchyard::config::Backend;

on_both_backends!(the_new_admin_routes_need_the_master_key,);

async fn the_new_admin_routes_need_the_master_key(backend: Backend) -> anyhow::Result<()> {
    let gw = TestGateway::start(backend, |_, _| {}).await?;
    let admin = gw.admin_client();
    let CreatedToken {
        token: secret, id, ..
    } = admin.create_token(json!({ "name": "t" })).await?;
    let bob = admin.create_user(json!({ "name": "bob" })).await?;
    let uid = id_of(&bob)?;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            format!("/admin/tokens/{id}"),
            Some(json!({ "rpm": 1 })),
        ),
        (
            Method::POST,
            format!("/admin/tokens/{id}/rotate"),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/admin/users".into(),
            Some(json!({ "name": "eve" })),
        ),
        (Method::GET, "/admin/users".into(), None),
        (Method::GET, format!("/admin/users/{uid}"), None),
        (
            Method::PATCH,
            format!("/admin/users/{uid}"),
            Some(json!({ "status": "suspended" })),
        ),
        (Method::DELETE, format!("/admin/users/{uid}"), None),
        (
            Method::POST,
            format!("/admin/users/{uid}/topup"),
            Some(json!({ "amount_usd": 5 })),
        ),
        (Method::GET, "/admin/billing".into(), None),
        (Method::GET, "/admin/model-prices".into(), None),
        (
            Method::PUT,
            "/admin/model-prices/x".into(),
            Some(json!({ "input_per_mtok": 1, "output_per_mtok": 1 })),
        ),
        (Method::DELETE, "/admin/model-prices/gpt-4o".into(), None),
        (Method::GET, "/admin/unpriced-models".into(), None),
    ];
    for (method, path, body) in routes {
        for credential in [
            None,
            Some(format!("Bearer {secret}")),
            Some(format!("Bearer {MASTER_KEY}x")),
        ] {
            let mut request = gw
                .client
                .request(method.clone(), format!("{}{path}", gw.url));
            if let Some(credential) = &credential {
                request = request.insert_header(("authorization", credential.as_str()));
            }
            let response = match &body {
                Some(body) => request.send_json(body).await,
                None => request.send().await,
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert_eq!(response.status(), 401, "{method} {path} {credential:?}");
        }
    }
    // Nothing changed behind the refusals.
    let shown = admin.get(&format!("/admin/users/{uid}")).await?;
    assert_eq!(
        (&shown["status"], &shown["balance_nanos"]),
        (&json!("active"), &json!(0))
    );
    assert_eq!(admin.token(id).await?["rpm"], Value::Null);
    assert_eq!(chat(&gw, &secret).await?.status, 200);
    gw.stop().await
}
