//! [`ApiDoc`]: the OpenAPI document of the host's API, generated from the handlers' annotations;
//! [`document`]: that document made true to the server ([`contract`]: the rules it enforces, the
//! answers every operation can get), served at `/openapi.json` with Swagger UI at `/docs`
//! (bundled: it works offline) and committed as `docs/openapi.json`.

mod contract;
mod sse;

pub(crate) use sse::{ConsoleStreamEvent, EventStreamEvent};

use crate::routes::{
    catalogue, commands, console, dead_letters, events, health, instances, metrics, tokens,
    worker_api, worker_credentials, workers,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The host's API as OpenAPI 3.1, as the annotations say it; [`document`] is what is served.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ManMan host API",
        description = "Run Steam dedicated game servers across many machines. Every route under \
                       /api/v1 needs a bearer token (operator tokens with the scope read, operate \
                       or admin: admins define games and configs, operate runs them, read sees; \
                       worker tokens for /api/v1/worker) but POST /api/v1/auth/token. \
                       Errors are application/problem+json."
    ),
    paths(
        health::healthz,
        health::readyz,
        metrics::metrics,
        catalogue::create_game,
        catalogue::list_games,
        catalogue::get_game,
        catalogue::update_game,
        catalogue::delete_game,
        catalogue::create_config,
        catalogue::list_game_configs,
        catalogue::list_configs,
        catalogue::get_config,
        catalogue::update_config,
        catalogue::delete_config,
        workers::list_workers,
        workers::get_worker,
        workers::shutdown,
        workers::history,
        dead_letters::list,
        instances::start,
        instances::list,
        instances::get,
        instances::stop,
        instances::restart,
        instances::kill,
        instances::stdin,
        instances::history,
        console::stream,
        commands::get,
        events::stream,
        worker_api::register,
        worker_api::heartbeat,
        worker_api::instance_config,
        worker_api::keep_console_tail,
        tokens::create,
        tokens::list,
        tokens::revoke,
        worker_credentials::create,
        worker_credentials::list,
        worker_credentials::revoke,
        worker_credentials::exchange,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "catalogue", description = "Games and their configs"),
        (name = "instances", description = "Runs of a config on a worker: start, follow, stop"),
        (name = "workers", description = "The game machines"),
        (name = "dead letters", description = "Messages the host refused or saw refused, with why (admin)"),
        (name = "commands", description = "What was asked of workers, and what became of it"),
        (name = "events", description = "Everything that happens, live"),
        (name = "tokens", description = "Operator tokens and worker credentials (admin)"),
        (name = "worker API", description = "What workers call (worker tokens)"),
        (name = "operations", description = "Health, readiness, metrics (no token)"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document the host serves at `/openapi.json` (and `docs/openapi.json`):
/// [`ApiDoc`] with what the annotations cannot say — the rules the server enforces, the range of
/// every integer, one object for each serde `flatten`, and the shared answers (401, 403, 400,
/// 413, 414, 415, 422, 431, 500, 503…) of each operation that can get them.
pub fn document() -> serde_json::Value {
    // A document of plain data always serializes.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    contract::apply(&mut doc);
    doc
}

/// The `bearer` security scheme the routes refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
