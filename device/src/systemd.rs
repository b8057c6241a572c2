//! systemd integration: readiness, status and watchdog pings.
//!
//! The unit runs the firmware as `Type=notify` with `WatchdogSec=`: the
//! firmware sends `READY=1` once the model is verified and warmed up (or
//! the panel is out of service, with the reason as `STATUS=`), pings the
//! watchdog from the main loop at half the interval systemd asks for, and
//! sends `STOPPING=1` on shutdown. If the main loop hangs, the pings stop
//! and systemd restarts the service. Outside systemd (`NOTIFY_SOCKET`
//! unset) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The connection to the service manager.
#[derive(Debug)]
pub struct Systemd {
    watchdog: Option<Duration>,
    last_ping: Instant,
    warned: bool,
}

impl Systemd {
    /// Read `NOTIFY_SOCKET` / `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let mut usec = 0;
        let watchdog =
            sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2));
        Systemd {
            watchdog,
            last_ping: Instant::now(),
            warned: false,
        }
    }

    fn send(&mut self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(false, states)
            && !self.warned
        {
            eprintln!("warning: cannot notify systemd: {e}");
            self.warned = true;
        }
    }

    /// Start-up is over; `status` is shown by `systemctl status`.
    pub fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_ping = Instant::now();
    }

    /// Ping the watchdog if half its interval has passed (call every turn
    /// of the main loop).
    pub fn tick(&mut self) {
        if let Some(interval) = self.watchdog
            && self.last_ping.elapsed() >= interval
        {
            self.send(&[NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }

    /// Shutting down.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}
