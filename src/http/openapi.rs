//! The OpenAPI 3.1 document of the whole API, built with `utoipa`'s document
//! model from a list of [`RouteDoc`]s: the route table
//! (`super::routes::ROUTES`) passes its own and serves the result at
//! `GET /openapi.json`, so the document lists exactly what the server serves.
//! This module knows nothing of the table or the handlers (the table depends
//! on it, not the reverse).
//!
//! Per route: method, path (actix patterns `{name:.*}` become `{name}`),
//! path parameters, summary, tag, security (gateway token, admin
//! credential, or none), the success status and the error shape. Request
//! bodies are declared as JSON objects without their fields (the upload
//! routes' as `multipart/form-data` with their required parts); fields and
//! answer bodies are described in the README and `docs/` (the route table
//! does not carry their schemas). `tests/schemathesis.rs` checks the
//! served answers against this document.

use crate::auth::Role;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, PathItem, PathsBuilder, Ref,
    Required, ResponseBuilder, SecurityRequirement,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential.
    Public,
    /// A gateway token (`Authorization: Bearer`, `x-api-key`, `x-gw-token`).
    Gateway,
    /// An admin session token or the master key.
    Admin,
}

/// One served route, as documented.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// `GET`, `POST`, ... or `ANY` (the proxy).
    pub method: &'static str,
    /// The actix path pattern (`/admin/tokens/{id}`, `{tail:.*}`).
    pub path: &'static str,
    pub access: Access,
    /// The least role an admin route needs (`None` for the others).
    pub role: Option<Role>,
    pub summary: &'static str,
}

/// The methods `ANY` (the proxy) is documented with.
const ANY_METHODS: [HttpMethod; 5] = [
    HttpMethod::Get,
    HttpMethod::Post,
    HttpMethod::Put,
    HttpMethod::Patch,
    HttpMethod::Delete,
];

/// `{tail:.*}` -> `{tail}`: OpenAPI has no patterns in templates.
pub fn openapi_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            '}' => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

/// The names of a path's parameters.
fn parameters(path: &str) -> Vec<String> {
    openapi_path(path)
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The HTTP methods a route is documented under.
pub fn methods(route: &RouteDoc) -> Vec<HttpMethod> {
    match route.method {
        "GET" => vec![HttpMethod::Get],
        "HEAD" => vec![HttpMethod::Head],
        "POST" => vec![HttpMethod::Post],
        "PUT" => vec![HttpMethod::Put],
        "PATCH" => vec![HttpMethod::Patch],
        "DELETE" => vec![HttpMethod::Delete],
        _ => ANY_METHODS.to_vec(),
    }
}

fn tag(path: &str) -> &'static str {
    if path.starts_with("/admin") || path == "/metrics" {
        "admin"
    } else if path.starts_with("/auth") {
        "login"
    } else if path.starts_with("/v1") || path.starts_with("/proxy") {
        "client"
    } else {
        "operations"
    }
}

/// The status a route answers on success: creations answer 201 with the
/// new resource, admin deletions 204 without a body, everything else 200.
/// (An undocumented 2xx would fall under `default`, the error shape.)
fn success_status(route: &RouteDoc) -> &'static str {
    match (route.method, route.path) {
        (
            "POST",
            "/admin/tokens"
            | "/admin/users"
            | "/admin/providers"
            | "/admin/admin-keys"
            | "/admin/providers/{name}/keys",
        ) => "201",
        ("DELETE", path) if path.starts_with("/admin/") => "204",
        _ => "200",
    }
}

/// Whether a route reads a JSON object body: the client API's POSTs and
/// the admin API's writes. (The proxy relays any body; `/auth/*` bodies are
/// described in docs/.)
fn takes_json_body(route: &RouteDoc) -> bool {
    matches!(route.method, "POST" | "PUT" | "PATCH")
        && matches!(route.access, Access::Gateway | Access::Admin)
}

/// The file parts of a route whose body is a `multipart/form-data` upload
/// (`None`: not an upload route).
fn upload_files(route: &RouteDoc) -> Option<&'static [&'static str]> {
    match (route.method, route.path) {
        ("POST", "/v1/audio/transcriptions" | "/v1/audio/translations") => Some(&["file"]),
        ("POST", "/v1/images/edits") => Some(&["image"]),
        _ => None,
    }
}

/// An upload's form: `model` and its files required (image edits: `prompt`
/// too); the other fields are in the README and docs/providers.md.
fn upload_form(files: &[&str], route: &RouteDoc) -> ObjectBuilder {
    let mut form = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("model", ObjectBuilder::new().schema_type(Type::String))
        .required("model");
    for file in files {
        form = form
            .property(
                *file,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary))),
            )
            .required(*file);
    }
    if route.path == "/v1/images/edits" {
        form = form
            .property("prompt", ObjectBuilder::new().schema_type(Type::String))
            .required("prompt");
    }
    form
}

/// Whether a route is an admin write, which answers 409 `conflict` when the
/// change collides with what exists (issue 11: once a 400).
fn may_conflict(route: &RouteDoc) -> bool {
    route.access == Access::Admin && matches!(route.method, "POST" | "PUT" | "PATCH" | "DELETE")
}

fn operation_id(method: &HttpMethod, path: &str) -> String {
    let method = serde_json::to_value(method)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut id = method;
    for part in openapi_path(path).split(['/', '{', '}', '-', '.']) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    id
}

/// `{"type": ["string", "null"]}`.
fn nullable_string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// The OpenAPI document (JSON) of `routes`.
pub fn build(routes: &[RouteDoc]) -> String {
    let mut paths = PathsBuilder::new();
    for route in routes {
        for method in methods(route) {
            let mut operation = OperationBuilder::new()
                .summary(Some(route.summary))
                .operation_id(Some(operation_id(&method, route.path)))
                .tag(tag(route.path))
                .response(
                    success_status(route),
                    ResponseBuilder::new().description(match success_status(route) {
                        "204" => "Done; no body",
                        _ => "Success (see the README for the body)",
                    }),
                )
                .response(
                    "default",
                    ResponseBuilder::new()
                        .description(
                            "An error in OpenAI's shape (Anthropic's on /v1/messages, Google's on /v1beta): 400, 401, 402, 403, 404, 409, 413, 429 with Retry-After, 5xx",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Error")))
                                .build(),
                        ),
                );
            if may_conflict(route) {
                operation = operation.response(
                    "409",
                    ResponseBuilder::new()
                        .description(
                            "Conflict (`\"code\": \"conflict\"`): a name taken, the same key twice, a resource still in use",
                        )
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Error")))
                                .build(),
                        ),
                );
            }
            if let Some(files) = upload_files(route) {
                operation = operation.request_body(Some(
                    RequestBodyBuilder::new()
                        .description(Some("A multipart/form-data upload"))
                        .content(
                            "multipart/form-data",
                            ContentBuilder::new()
                                .schema(Some(upload_form(files, route)))
                                .build(),
                        )
                        .build(),
                ));
            } else if takes_json_body(route) {
                operation = operation.request_body(Some(
                    RequestBodyBuilder::new()
                        .description(Some("A JSON object (see the README for its fields)"))
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                                .build(),
                        )
                        .build(),
                ));
            }
            for name in parameters(route.path) {
                operation = operation.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            operation = match route.access {
                Access::Public => operation,
                Access::Gateway => operation
                    .security(SecurityRequirement::new(
                        "gateway_token",
                        Vec::<String>::new(),
                    ))
                    .security(SecurityRequirement::new(
                        "gateway_api_key",
                        Vec::<String>::new(),
                    )),
                // OpenAPI 3.1 lets a non-OAuth requirement list the roles
                // it needs: the least role, also said in the description.
                Access::Admin => {
                    let role = route.role.unwrap_or(Role::Admin);
                    operation
                        .description(Some(format!(
                            "Needs an admin credential with the `{role}` role or higher \
                             (viewer < operator < admin; the master key is admin)."
                        )))
                        .security(SecurityRequirement::new("admin", [role.as_str()]))
                }
            };
            paths = paths.path(openapi_path(route.path), PathItem::new(method, operation));
        }
    }
    let error = ObjectBuilder::new()
        .description(Some(
            "OpenAI's error shape: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}; \
             on /v1beta Google's, {\"error\": {\"code\": 400, \"message\", \"status\"}}",
        ))
        .property(
            "error",
            ObjectBuilder::new()
                .property("message", ObjectBuilder::new().schema_type(Type::String))
                .property("type", ObjectBuilder::new().schema_type(Type::String))
                // The gateway sends `"param": null` and `"code": null` when
                // there is none (as OpenAI does).
                .property("param", nullable_string())
                // Google's (the Gemini door's) `code` is the HTTP status.
                .property(
                    "code",
                    ObjectBuilder::new().schema_type(SchemaType::from_iter([
                        Type::String,
                        Type::Integer,
                        Type::Null,
                    ])),
                )
                .property("status", ObjectBuilder::new().schema_type(Type::String))
                .required("message"),
        )
        .required("error")
        .build();
    let components = ComponentsBuilder::new()
        .schema("Error", error)
        .security_scheme(
            "gateway_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A gateway token (sy-...)"))
                    .build(),
            ),
        )
        .security_scheme(
            "gateway_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        )
        .security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin session token (sya-..., from /auth/verify) or the master key",
                    ))
                    .build(),
            ),
        )
        .build();
    let document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Switchyard")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Self-hosted AI API gateway: OpenAI-, Anthropic- and Gemini-compatible client API, admin API",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build();
    document.to_json().unwrap_or_else(|_| "{}".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actix_patterns_become_openapi_templates() {
        assert_eq!(
            openapi_path("/proxy/{provider}/{tail:.*}"),
            "/proxy/{provider}/{tail}"
        );
        assert_eq!(openapi_path("/admin/tokens/{id}"), "/admin/tokens/{id}");
        assert_eq!(
            parameters("/admin/providers/{name}/keys/{id}"),
            vec!["name", "id"]
        );
        assert!(parameters("/v1/models").is_empty());
    }
}
