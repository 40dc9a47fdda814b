//! What each path answers. Every endpoint is read-only: GET and HEAD, else 405.

use super::HttpConfig;
use super::request::{Head, Method};
use super::response::{HTML, JSON, PROMETHEUS, Response};
use super::{dashboard, metrics, state};
use nextdb_shard::stats::ShardStatsSnapshot;
use nextdb_shard::{ShardContext, ShardError};

#[derive(Clone, Copy)]
enum Route {
    Dashboard,
    DashboardJson,
    Metrics,
    Healthz,
    Readyz,
    DebugState,
}

fn route(path: &str) -> Option<Route> {
    Some(match path {
        "/" | "/index.html" => Route::Dashboard,
        "/api/dashboard" => Route::DashboardJson,
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/debug/state" => Route::DebugState,
        _ => return None,
    })
}

pub async fn respond(ctx: &ShardContext, cfg: &HttpConfig, head: &Head) -> Response {
    let Some(route) = route(&head.path) else {
        return Response::text(404, format!("no endpoint at {}", head.path));
    };
    if head.method == Method::Other {
        let mut r = Response::text(405, "only GET and HEAD are served");
        r.allow = Some("GET, HEAD");
        return r;
    }
    match route {
        Route::Dashboard => Response::new(200, HTML, dashboard::PAGE),
        Route::Healthz => Response::text(200, "ok"),
        Route::Metrics => {
            with_snapshots(ctx, |snaps| {
                let info = metrics::NodeInfo {
                    version: env!("CARGO_PKG_VERSION"),
                    sync: &ctx.core.sync.to_string(),
                    uptime_seconds: cfg.started.elapsed().as_secs_f64(),
                    ready: not_ready(ctx, snaps).is_empty(),
                };
                Response::new(200, PROMETHEUS, metrics::render(snaps, &info))
            })
            .await
        }
        Route::DashboardJson => {
            with_snapshots(ctx, |snaps| {
                let uptime_us = cfg.started.elapsed().as_micros() as u64;
                Response::new(200, JSON, dashboard::json(snaps, uptime_us).to_string())
            })
            .await
        }
        Route::DebugState => {
            with_snapshots(ctx, |snaps| {
                let up = cfg.started.elapsed().as_secs_f64();
                let doc = state::json(snaps, up, ctx.is_stopping());
                Response::new(200, JSON, doc.to_string())
            })
            .await
        }
        Route::Readyz => {
            with_snapshots(ctx, |snaps| match not_ready(ctx, snaps) {
                why if why.is_empty() => Response::text(200, "ready"),
                why => Response::text(503, format!("not ready: {}", why.join("; "))),
            })
            .await
        }
    }
}

/// Gathers every core's snapshot and answers with `f`; 503 if a core cannot answer
/// (the node is stopping), 500 for anything else.
async fn with_snapshots(
    ctx: &ShardContext,
    f: impl FnOnce(&[ShardStatsSnapshot]) -> Response,
) -> Response {
    match ctx.stats_snapshots().await {
        Ok(snaps) => f(&snaps),
        Err(e @ ShardError::ShuttingDown) => Response::text(503, e.to_string()),
        Err(e) => Response::text(500, e.to_string()),
    }
}

/// Why the node does not serve (empty: it does): stopping, or a shard whose
/// partition group does not serve yet (recovering) or whose engine failed.
fn not_ready(ctx: &ShardContext, snaps: &[ShardStatsSnapshot]) -> Vec<String> {
    let mut why = Vec::new();
    if ctx.is_stopping() {
        why.push("the node is stopping".to_string());
    }
    for s in snaps {
        if !s.raft.serving {
            why.push(format!("shard {} is not serving yet", s.shard));
        }
        if let Some(e) = &s.engine.background_error {
            why.push(format!("shard {}: background work failed: {e}", s.shard));
        }
    }
    why
}
