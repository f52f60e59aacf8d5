//! The dashboard's JSON API under `/api/`: the route list and the OpenAPI document. Routes are
//! declared with `utoipa-axum`, so the router and `/api/openapi.json` come from the same list
//! and cannot drift apart. The handlers and their wire types are in the modules named after
//! what they serve: [`session`], [`overview`], [`requests`], [`monitoring`], [`security`],
//! [`events`], [`accounts`], [`keys`], [`limits`].

use std::sync::Arc;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::SESSION_COOKIE;
use super::{
    DashboardState, accounts, conversations, events, keys, limits, monitoring, overview, requests,
    security, session,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Claude Nexus dashboard API",
        description = "Log in with POST /api/login (session cookie), or send the dashboard key as Authorization: Bearer."
    ),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every API route, with its OpenAPI description.
pub fn routes() -> OpenApiRouter<Arc<DashboardState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(session::login))
        .routes(routes!(session::logout))
        .routes(routes!(session::session))
        .routes(routes!(overview::overview))
        .routes(routes!(requests::list_requests))
        .routes(routes!(requests::export_requests))
        .routes(routes!(requests::request_detail))
        .routes(routes!(conversations::list_conversations))
        .routes(routes!(conversations::conversation))
        .routes(routes!(events::events))
        .routes(routes!(monitoring::monitoring))
        .routes(routes!(security::security))
        .routes(routes!(security::mark_manual))
        .routes(routes!(security::lockouts))
        .routes(routes!(security::lift_lockout))
        .routes(routes!(security::alerts))
        .routes(routes!(accounts::list_accounts, accounts::add_account))
        .routes(routes!(accounts::usage_window))
        .routes(routes!(accounts::oauth::oauth_refresh))
        .routes(routes!(accounts::oauth::oauth_start))
        .routes(routes!(accounts::oauth::oauth_finish))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(limits::list_limits))
        .routes(routes!(limits::set_limits, limits::delete_limits))
}
