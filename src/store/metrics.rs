//! The store's metrics: latency and errors of every operation by backend, and, on the embedded backend, the
//! size of each group-commit batch, how long its commit (the fsync) took, and what the purger deleted and how long
//! its passes took.
//!
//! The handles are created with the store and registered by whoever exposes them (the application's registry);
//! prometheus-client handles are shared, so the store records into them directly.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::StoreError;

/// Labels of an operation's latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabels {
    backend: &'static str,
    operation: &'static str,
}

/// Labels of an operation's failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    backend: &'static str,
    operation: &'static str,
    kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 25 µs to about 0.8 s.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

/// The store's metric handles; cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    backend: &'static str,
    latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    /// Jobs per group-commit transaction (embedded backend).
    pub(crate) batch_size: Histogram,
    /// Seconds per commit, fsync included (embedded backend).
    pub(crate) commit_seconds: Histogram,
    /// Expired entries deleted by the purger (embedded backend).
    pub(crate) purged: Counter,
    /// Seconds per purge pass over every table (embedded backend).
    pub(crate) purge_seconds: Histogram,
}

impl StoreMetrics {
    /// Handles for `backend` (`"embedded"` or `"redis"`).
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_seconds: latency_histogram(),
            purged: Counter::default(),
            // 1 ms to about 65 s.
            purge_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        }
    }

    /// Records one operation that took `seconds`, and its failure if it failed.
    pub(crate) fn observe<T>(
        &self,
        operation: &'static str,
        seconds: f64,
        result: &Result<T, StoreError>,
    ) {
        let labels = OpLabels {
            backend: self.backend,
            operation,
        };
        self.latency.get_or_create(&labels).observe(seconds);
        if let Err(e) = result {
            let kind = match e {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Corrupt(_) => "corrupt",
            };
            self.errors
                .get_or_create(&ErrorLabels {
                    backend: self.backend,
                    operation,
                    kind,
                })
                .inc();
        }
    }

    /// Adds the handles to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tokenmint_store_operation_duration_seconds",
            "Latency of token store operations, by backend and operation",
            self.latency.clone(),
        );
        registry.register(
            "tokenmint_store_errors",
            "Failed token store operations, by backend, operation and kind (unavailable, corrupt)",
            self.errors.clone(),
        );
        if self.backend == "embedded" {
            registry.register(
                "tokenmint_store_embedded_batch_size",
                "Writes grouped into one durable transaction by the embedded store",
                self.batch_size.clone(),
            );
            registry.register(
                "tokenmint_store_embedded_commit_duration_seconds",
                "Duration of the embedded store's commits, fsync included",
                self.commit_seconds.clone(),
            );
            registry.register(
                "tokenmint_store_embedded_purged_entries",
                "Expired entries deleted by the embedded store's purger",
                self.purged.clone(),
            );
            registry.register(
                "tokenmint_store_embedded_purge_duration_seconds",
                "Duration of the embedded store's purge passes (every table, read in chunks beside the writes)",
                self.purge_seconds.clone(),
            );
        }
    }
}
