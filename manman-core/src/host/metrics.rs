//! [`Metrics`]: what a host replica counts, and the Prometheus text it serves at `/metrics`.
//!
//! Counters are this replica's (Prometheus adds replicas up); the instance and worker gauges
//! are read from the store at each scrape, so every replica reports the same truth.

use crate::command::CommandState;
use crate::host::DeadLetterReason;
use crate::status::Status;
use crate::worker::Worker;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the command latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The HTTP methods counted under their own name in `manman_http_requests_total`; any other
/// method (HTTP lets a client make one up) is counted as `other`, so requests cannot add series.
const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The most distinct routes `manman_http_requests_total` counts; requests on any further route
/// are counted under the route `other`. The router's patterns are far fewer: this only bounds
/// the series should a caller pass something else than a pattern.
const MAX_HTTP_ROUTES: usize = 256;

/// The host's counters. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    status_events: AtomicU64,
    console_lines_dropped: AtomicU64,
    events_dropped: AtomicU64,
    dead_letters: Mutex<BTreeMap<&'static str, u64>>,
    commands: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<Histogram>,
    http: Mutex<HttpRequests>,
    services: Mutex<BTreeMap<String, ServiceState>>,
}

/// `manman_host_service_up` and `manman_host_service_restarts_total` of one background service.
#[derive(Debug, Default, Clone, Copy)]
struct ServiceState {
    up: bool,
    restarts: u64,
}

/// `manman_http_requests_total`: every label bounded (methods by [`HTTP_METHODS`], routes by
/// [`MAX_HTTP_ROUTES`], codes by the 100–599 range; `None` is `other`).
#[derive(Debug, Default)]
struct HttpRequests {
    counts: BTreeMap<(&'static str, String, Option<u16>), u64>,
    routes: BTreeSet<String>,
}

impl HttpRequests {
    fn count(&mut self, method: &str, route: &str, status: u16) {
        let method = HTTP_METHODS
            .into_iter()
            .find(|known| *known == method)
            .unwrap_or("other");
        let route = if self.routes.contains(route) {
            route
        } else if self.routes.len() < MAX_HTTP_ROUTES {
            self.routes.insert(route.to_owned());
            route
        } else {
            "other"
        };
        let code = (100..=599).contains(&status).then_some(status);
        *self
            .counts
            .entry((method, route.to_owned(), code))
            .or_default() += 1;
    }
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the store says at a scrape.
#[derive(Debug, Clone, Default)]
pub struct StoreSnapshot {
    /// Instances per status.
    pub instances: Vec<(Status, u64)>,
    /// Every worker.
    pub workers: Vec<Worker>,
    /// When the snapshot was taken.
    pub at: DateTime<Utc>,
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Status events recorded by the status processor.
    pub fn status_events_processed(&self, n: u64) {
        self.inner.status_events.fetch_add(n, Ordering::Relaxed);
    }

    /// A console watcher was skipped past `n` lines (and told, with a `lagged` event).
    pub fn console_lines_dropped(&self, n: u64) {
        self.inner
            .console_lines_dropped
            .fetch_add(n, Ordering::Relaxed);
    }

    /// An event watcher was skipped past `n` events (and told, with a `lagged` event).
    pub fn events_dropped(&self, n: u64) {
        self.inner.events_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// A message was dead-lettered (by this replica, or seen dead-lettered) for `reason`.
    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        *lock(&self.inner.dead_letters)
            .entry(reason.as_str())
            .or_default() += 1;
    }

    /// A command reached a final state `latency` after it was issued.
    pub fn command_finished(&self, state: CommandState, latency: Duration) {
        *lock(&self.inner.commands)
            .entry(state.as_str())
            .or_default() += 1;
        let seconds = latency.as_secs_f64();
        let mut histogram = lock(&self.inner.latency);
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// An HTTP request was answered. `route` should be the route's pattern, not the path;
    /// whatever the caller passes, the labels stay bounded: methods other than
    /// GET, HEAD, POST, PUT, DELETE, PATCH and OPTIONS are counted as `other`, routes beyond
    /// the 256th distinct one as `other`, and status codes outside 100–599 as `other`.
    pub fn http_request(&self, method: &str, route: &str, status: u16) {
        lock(&self.inner.http).count(method, route, status);
    }

    /// The background service `name` of the host runtime is running (`up`) or stopped, waiting to
    /// be started again.
    pub fn service_up(&self, name: &str, up: bool) {
        lock(&self.inner.services)
            .entry(name.to_owned())
            .or_default()
            .up = up;
    }

    /// The background service `name` stopped before the host did, and is started again.
    pub fn service_restarted(&self, name: &str) {
        lock(&self.inner.services)
            .entry(name.to_owned())
            .or_default()
            .restarts += 1;
    }

    /// The Prometheus text exposition (version 0.0.4) of the counters and `store`.
    pub fn render(&self, store: &StoreSnapshot) -> String {
        let mut out = String::new();
        let name = "manman_instances";
        header(
            &mut out,
            name,
            "gauge",
            "Instances by current status, from the store.",
        );
        for status in Status::ALL {
            let n = store
                .instances
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
        }

        let name = "manman_worker_heartbeat_lag_seconds";
        header(
            &mut out,
            name,
            "gauge",
            "Seconds since each live or lost worker was last heard from.",
        );
        for worker in store.workers.iter().filter(|w| w.status.is_active()) {
            let last = worker.last_heartbeat_at.unwrap_or(worker.started_at);
            let lag = (store.at - last).num_milliseconds().max(0) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{name}{{worker=\"{}\",status=\"{}\"}} {lag}",
                escape(&worker.name),
                worker.status
            );
        }

        let name = "manman_status_events_processed_total";
        header(
            &mut out,
            name,
            "counter",
            "Status events recorded by this replica's status processor.",
        );
        let events = self.inner.status_events.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name} {events}");

        let name = "manman_console_lines_dropped_total";
        header(
            &mut out,
            name,
            "counter",
            "Console lines SSE watchers on this replica were skipped past (each told with a \
             `lagged` event), summed over watchers.",
        );
        let dropped = self.inner.console_lines_dropped.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name} {dropped}");

        let name = "manman_events_dropped_total";
        header(
            &mut out,
            name,
            "counter",
            "Events SSE watchers on this replica were skipped past (each told with a `lagged` \
             event), summed over watchers.",
        );
        let dropped = self.inner.events_dropped.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name} {dropped}");

        let name = "manman_dead_letters_total";
        header(
            &mut out,
            name,
            "counter",
            "Messages this replica dead-lettered or saw dead-lettered, by reason (the newest are \
             listed at GET /api/v1/dead-letters).",
        );
        let dead = lock(&self.inner.dead_letters);
        for reason in DeadLetterReason::ALL {
            let n = dead.get(reason.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", reason.as_str());
        }
        drop(dead);

        let name = "manman_commands_total";
        header(
            &mut out,
            name,
            "counter",
            "Commands that reached a final state on this replica, by outcome.",
        );
        let commands = lock(&self.inner.commands);
        for state in [
            CommandState::Succeeded,
            CommandState::Failed,
            CommandState::Expired,
        ] {
            let n = commands.get(state.as_str()).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}{{outcome=\"{state}\"}} {n}");
        }
        drop(commands);

        let name = "manman_command_latency_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time from a command's issue to its final state.",
        );
        let histogram = lock(&self.inner.latency);
        for (n, bound) in histogram.buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", histogram.count);
        let _ = writeln!(out, "{name}_sum {}", histogram.sum);
        let _ = writeln!(out, "{name}_count {}", histogram.count);
        drop(histogram);

        let services = lock(&self.inner.services).clone();
        let name = "manman_host_service_up";
        header(
            &mut out,
            name,
            "gauge",
            "1 while a background service of this replica's host runtime runs, 0 while it waits \
             to be started again after a failure.",
        );
        for (service, state) in &services {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\"}} {}",
                escape(service),
                u8::from(state.up)
            );
        }
        let name = "manman_host_service_restarts_total";
        header(
            &mut out,
            name,
            "counter",
            "How often each background service of this replica's host runtime stopped early (an \
             error, a panic, or an unexpected return) and was started again.",
        );
        for (service, state) in &services {
            let _ = writeln!(
                out,
                "{name}{{service=\"{}\"}} {}",
                escape(service),
                state.restarts
            );
        }

        let name = "manman_http_requests_total";
        header(
            &mut out,
            name,
            "counter",
            "HTTP requests answered by this replica, by method, route and status code.",
        );
        for ((method, route, code), n) in &lock(&self.inner.http).counts {
            let code = code.map_or_else(|| "other".to_owned(), |code| code.to_string());
            let _ = writeln!(
                out,
                "{name}{{method=\"{method}\",route=\"{}\",code=\"{code}\"}} {n}",
                escape(route)
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_samples() {
        let metrics = Metrics::new();
        metrics.status_events_processed(3);
        metrics.console_lines_dropped(40);
        metrics.console_lines_dropped(2);
        metrics.events_dropped(5);
        metrics.command_finished(CommandState::Succeeded, Duration::from_millis(20));
        metrics.command_finished(CommandState::Failed, Duration::from_secs(2));
        metrics.http_request("GET", "/api/v1/instances/{id}", 200);
        metrics.http_request("GET", "/api/v1/instances/{id}", 200);
        let text = metrics.render(&StoreSnapshot {
            instances: vec![(Status::Running, 7)],
            workers: Vec::new(),
            at: Utc::now(),
        });
        for line in [
            "manman_instances{status=\"running\"} 7",
            "manman_instances{status=\"crashed\"} 0",
            "manman_status_events_processed_total 3",
            "manman_console_lines_dropped_total 42",
            "manman_events_dropped_total 5",
            "manman_commands_total{outcome=\"succeeded\"} 1",
            "manman_commands_total{outcome=\"failed\"} 1",
            "manman_command_latency_seconds_bucket{le=\"0.025\"} 1",
            "manman_command_latency_seconds_bucket{le=\"2.5\"} 2",
            "manman_command_latency_seconds_count 2",
            "manman_http_requests_total{method=\"GET\",route=\"/api/v1/instances/{id}\",code=\"200\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Each family is declared once, before its samples.
        assert_eq!(text.matches("# TYPE manman_instances gauge").count(), 1);
    }

    /// The `manman_http_requests_total` lines of a rendering.
    fn http_series(metrics: &Metrics) -> Vec<String> {
        metrics
            .render(&StoreSnapshot::default())
            .lines()
            .filter(|l| l.starts_with("manman_http_requests_total{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let metrics = Metrics::new();
        for n in 0..1_000 {
            metrics.http_request(&format!("FOO{n}"), "/metrics", 405);
        }
        // HTTP methods are case-sensitive: `get` is not `GET`.
        metrics.http_request("get", "/metrics", 405);
        metrics.http_request("PATCH", "/metrics", 405);
        assert_eq!(
            http_series(&metrics),
            [
                "manman_http_requests_total{method=\"PATCH\",route=\"/metrics\",code=\"405\"} 1",
                "manman_http_requests_total{method=\"other\",route=\"/metrics\",code=\"405\"} 1001",
            ]
        );
    }

    #[test]
    fn routes_and_codes_are_bounded_too() {
        let metrics = Metrics::new();
        for n in 0..MAX_HTTP_ROUTES + 100 {
            metrics.http_request("GET", &format!("/made-up/{n}"), 200);
        }
        metrics.http_request("GET", "/made-up/0", 999);
        metrics.http_request("GET", "/made-up/0", 42);
        let series = http_series(&metrics);
        assert_eq!(series.len(), MAX_HTTP_ROUTES + 2, "{series:#?}");
        assert!(
            series.contains(
                &"manman_http_requests_total{method=\"GET\",route=\"other\",code=\"200\"} 100"
                    .to_owned()
            )
        );
        assert!(
            series.contains(
                &"manman_http_requests_total{method=\"GET\",route=\"/made-up/0\",code=\"other\"} 2"
                    .to_owned()
            )
        );
    }
}
