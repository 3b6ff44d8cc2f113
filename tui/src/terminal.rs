//! The event loop: one `select!` over key events (crossterm's `EventStream`), API replies,
//! a clock tick and signals; drawing is debounced to one frame per [`FRAME`]. The terminal is
//! put back as it was on every way out: return, error, panic (ratatui's hook), Ctrl-C,
//! SIGINT/SIGTERM/SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use crate::api::UnixClient;
use crate::app::App;
use crate::ui::Theme;
use crate::worker;

/// Frames are drawn at most this often: a burst of replies or keys makes one frame.
const FRAME: Duration = Duration::from_millis(30);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Restores the terminal when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Run the console against the admin socket `socket` until the operator quits.
pub async fn run(socket: PathBuf) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("the console needs a terminal (standard output is not one)");
    }
    let api = Arc::new(UnixClient::new(socket));
    let (jobs, mut replies) = worker::spawn(api);
    let mut app = App::new(Theme::from_env(), unix_now());
    app.start();

    // Installs a panic hook that restores the terminal before the message is printed.
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let mut events = EventStream::new();
    let mut tick = interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut dirty = true;
    let mut next_frame = Instant::now();

    loop {
        for job in app.outbox.drain(..) {
            // The worker lives as long as the loop: a send cannot fail while it runs.
            let _ = jobs.send(job);
        }
        if app.quit {
            break;
        }
        let now = Instant::now();
        if dirty && now >= next_frame {
            terminal.draw(|f| app.render(f))?;
            dirty = false;
            next_frame = now + FRAME;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    app.on_key(key);
                    dirty = true;
                }
                Some(Ok(Event::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            Some(reply) = replies.recv() => {
                app.on_reply(reply);
                dirty = true;
            }
            _ = tick.tick() => {
                app.on_tick(unix_now());
                dirty = true;
            }
            _ = sleep_until(next_frame), if dirty => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    Ok(())
}
