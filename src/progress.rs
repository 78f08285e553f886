//! Progress on stderr: one line per host (indicatif) on a terminal, plain log lines otherwise.
//! Log lines written while bars are shown go through the bars, so neither breaks the other.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static ACTIVE: OnceLock<Mutex<Option<MultiProgress>>> = OnceLock::new();

fn active() -> &'static Mutex<Option<MultiProgress>> {
    ACTIVE.get_or_init(|| Mutex::new(None))
}

/// Runs `f` (a prompt on the terminal) with the progress bars, if any, cleared meanwhile.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let mp = active().lock().unwrap_or_else(|p| p.into_inner()).clone();
    match mp {
        Some(mp) => mp.suspend(f),
        None => f(),
    }
}

/// A stderr writer for the log subscriber that prints above the progress bars when they show.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // every log line passes the secrets redactor
        let text = crate::secrets::redact(&String::from_utf8_lossy(buf));
        let guard = active().lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(mp) => mp.suspend(|| std::io::stderr().write_all(text.as_bytes()))?,
            None => std::io::stderr().write_all(text.as_bytes())?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

/// Per-host progress for one phase of work.
pub struct Progress {
    mp: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    start: Instant,
    width: usize,
}

impl Progress {
    /// `enabled`: draw bars (stderr is a terminal and the user did not ask for quiet output).
    pub fn new(title: &str, hosts: &[String], enabled: bool) -> Self {
        let width = hosts.iter().map(|h| h.len()).max().unwrap_or(4);
        let mut bars = HashMap::new();
        let mp = enabled.then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {elapsed:>4}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            for h in hosts {
                let pb = mp.add(ProgressBar::new_spinner().with_style(style.clone()));
                pb.set_prefix(format!("{h:width$}"));
                pb.set_message("waiting");
                pb.enable_steady_tick(Duration::from_millis(120));
                bars.insert(h.clone(), pb);
            }
            *active().lock().unwrap_or_else(|p| p.into_inner()) = Some(mp.clone());
            mp
        });
        if mp.is_none() {
            tracing::info!(
                "{title}: {} host{}",
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            );
        }
        Progress {
            mp,
            bars: Mutex::new(bars),
            start: Instant::now(),
            width,
        }
    }

    /// What a host is doing now.
    pub fn set(&self, host: &str, message: &str) {
        if self.mp.is_some() {
            if let Some(pb) = self
                .bars
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(host)
            {
                pb.set_message(message.to_string());
            }
        } else {
            tracing::info!("{host:w$}  {message}", w = self.width);
        }
    }

    /// A host finished, well or not.
    pub fn finish(&self, host: &str, ok: bool, message: &str) {
        let mark = if ok { "ok" } else { "FAILED" };
        if self.mp.is_some() {
            if let Some(pb) = self
                .bars
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(host)
            {
                pb.finish_with_message(format!("{mark} {message}"));
            }
        } else if ok {
            tracing::info!(
                "{host:w$}  {mark} {message} ({:.1}s)",
                self.start.elapsed().as_secs_f64(),
                w = self.width
            );
        } else {
            tracing::error!(
                "{host:w$}  {mark} {message} ({:.1}s)",
                self.start.elapsed().as_secs_f64(),
                w = self.width
            );
        }
    }

    /// Whether bars are drawn (a terminal), rather than log lines written.
    pub fn draws(&self) -> bool {
        self.mp.is_some()
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.mp.is_some() {
            for pb in self.bars.lock().unwrap_or_else(|p| p.into_inner()).values() {
                if !pb.is_finished() {
                    pb.abandon();
                }
            }
            *active().lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}
