//! Tracing set-up, done once at start-up: text or JSON lines to stdout, filtered by `log.level` unless
//! `RUST_LOG` is set.
//!
//! Lines go through tracing-appender's non-blocking writer: request handlers hand a formatted line to a bounded
//! queue and a dedicated thread writes stdout, so a slow log pipe (or the lock on stdout) never holds a worker.
//! That thread writes whatever the queue holds in one go, flushes when the queue is empty, and lingers briefly
//! before it waits for more (see [`Lingering`]).
//! When the queue is full the line is dropped and counted ([`dropped_lines`], exported as
//! `tokenmint_log_lines_dropped_total`) rather than blocking the request. Colour codes only go to a terminal.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Lines the queue holds before new ones are dropped.
pub const LOG_QUEUE_LINES: usize = 65_536;

/// The writer thread's buffer: at most this much is written to stdout per system call.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// How long the writer thread waits after writing out everything queued, before it looks at the queue again.
const LOG_LINGER: Duration = Duration::from_millis(2);

/// The writer thread's output: buffered, and lingering after each flush.
///
/// tracing-appender's writer thread writes every queued line, flushes when the queue is empty, then blocks until
/// the next line. Buffered, a busy service's lines go out many per system call (stdout alone writes each line
/// with its own). Lingering, the thread is not blocked on the queue when the next lines arrive, so request
/// handlers queue them without waking it (one futex wake and context switch per line otherwise). A line reaches
/// stdout at most [`LOG_LINGER`] later; a burst of lines waits in the queue, which holds [`LOG_QUEUE_LINES`].
/// Measured in the commit that added each part (per-thread CPU under the mint route's load).
struct Lingering<W>(W);

impl<W: Write> Write for Lingering<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.0.flush();
        std::thread::sleep(LOG_LINGER);
        flushed
    }
}

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the writer's queue was full.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Installs the global subscriber; keep the returned guard alive until exit (dropping it flushes the queue).
/// A second call (tests build many apps) installs nothing and returns `None`.
pub fn init(settings: &LogSettings) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("tokenmint-log-writer")
        .finish(Lingering(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::io::stdout(),
        )));
    let counter = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer);
    let installed = match settings.format {
        // The request's span (method, route, request id) once, under "span"; not again in a "spans" list.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    match installed {
        Ok(()) => {
            let _ = DROPPED.set(counter);
            Some(guard)
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufWriter, Write};
    use std::time::Instant;

    use super::{Lingering, LOG_LINGER};

    #[test]
    fn lingering_passes_every_line_through_on_flush_and_then_waits() {
        let mut out = Lingering(BufWriter::with_capacity(64, Vec::new()));
        out.write_all(b"one\n").expect("write");
        out.write_all(b"two\n").expect("write");
        assert!(out.0.get_ref().is_empty(), "buffered until flushed");

        let started = Instant::now();
        out.flush().expect("flush");

        assert_eq!(out.0.get_ref().as_slice(), b"one\ntwo\n");
        assert!(started.elapsed() >= LOG_LINGER, "lingers after flushing");
    }
}
