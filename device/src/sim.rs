//! The simulated board: pins in memory, for a laptop and for tests.
//!
//! [`SimButton`] is an `InputPin` whose level a [`ButtonHandle`] sets (the
//! terminal's Enter key, or a test); [`SimLed`] is an `OutputPin` that
//! records every level it is given and can draw the panel on stderr: as
//! coloured dots redrawn in place on a terminal (named dots without colour
//! when `NO_COLOR` is set, <https://no-color.org>), or as one line per
//! change (`leds: green=1 amber=0 red=0`) when stderr is a file or a pipe,
//! so logs and tests can read the sequence.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_hal::digital::{ErrorType, InputPin, OutputPin};

/// The simulated button pin (active high: pressed reads high).
#[derive(Clone, Debug, Default)]
pub struct SimButton {
    pressed: Arc<AtomicBool>,
}

/// Presses the simulated button.
#[derive(Clone, Debug)]
pub struct ButtonHandle {
    pressed: Arc<AtomicBool>,
}

impl SimButton {
    /// A released button and the handle that presses it.
    pub fn new() -> (Self, ButtonHandle) {
        let b = SimButton::default();
        let h = ButtonHandle {
            pressed: b.pressed.clone(),
        };
        (b, h)
    }
}

impl ButtonHandle {
    /// Hold the button for `duration` (blocks the calling thread).
    pub fn press_for(&self, duration: Duration) {
        self.pressed.store(true, Ordering::SeqCst);
        std::thread::sleep(duration);
        self.pressed.store(false, Ordering::SeqCst);
    }
}

impl ErrorType for SimButton {
    type Error = Infallible;
}

impl InputPin for SimButton {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(self.pressed.load(Ordering::SeqCst))
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(!self.pressed.load(Ordering::SeqCst))
    }
}

/// Every level each LED was set to, shared between the LEDs and observers.
#[derive(Clone, Debug, Default)]
pub struct LedLog {
    /// (green, amber, red) after each change.
    pub changes: Arc<Mutex<Vec<(bool, bool, bool)>>>,
    state: Arc<Mutex<(bool, bool, bool)>>,
    draw: bool,
    terminal: bool,
    colour: bool,
}

/// Whether `NO_COLOR` (set and not empty) asks for no colour.
fn no_color(value: Option<std::ffi::OsString>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// The panel as drawn in place on a terminal: ANSI-coloured dots, or with
/// `colour` off, each LED's name and a filled or hollow dot.
fn panel(now: (bool, bool, bool), colour: bool) -> String {
    let dot = |on: bool, name: &str, code: &str| match (on, colour) {
        (true, true) => format!("\x1b[{code}m●\x1b[0m"),
        (false, true) => "○".to_string(),
        (true, false) => format!("{name} ●"),
        (false, false) => format!("{name} ○"),
    };
    format!(
        "\r  {} {} {}  ",
        dot(now.0, "green", "32"),
        dot(now.1, "amber", "33"),
        dot(now.2, "red", "31")
    )
}

impl LedLog {
    /// A log that also draws each change on stderr when `draw`.
    pub fn new(draw: bool) -> Self {
        LedLog {
            draw,
            terminal: std::io::stderr().is_terminal(),
            colour: !no_color(std::env::var_os("NO_COLOR")),
            ..Default::default()
        }
    }

    /// The three simulated LEDs writing to this log.
    pub fn leds(&self) -> (SimLed, SimLed, SimLed) {
        let led = |index| SimLed {
            index,
            log: self.clone(),
        };
        (led(0), led(1), led(2))
    }

    /// Lamps now.
    pub fn current(&self) -> (bool, bool, bool) {
        *self.state.lock().expect("not poisoned")
    }

    /// Every distinct lamp state so far, in order.
    pub fn history(&self) -> Vec<(bool, bool, bool)> {
        self.changes.lock().expect("not poisoned").clone()
    }
}

/// One simulated LED (0 green, 1 amber, 2 red); high = lit.
#[derive(Debug)]
pub struct SimLed {
    index: usize,
    log: LedLog,
}

impl ErrorType for SimLed {
    type Error = Infallible;
}

impl SimLed {
    fn set(&mut self, on: bool) {
        let mut state = self.log.state.lock().expect("not poisoned");
        let slot = match self.index {
            0 => &mut state.0,
            1 => &mut state.1,
            _ => &mut state.2,
        };
        if *slot == on {
            return;
        }
        *slot = on;
        let now = *state;
        self.log.changes.lock().expect("not poisoned").push(now);
        if self.log.draw && !self.log.terminal {
            eprintln!(
                "leds: green={} amber={} red={}",
                u8::from(now.0),
                u8::from(now.1),
                u8::from(now.2)
            );
        } else if self.log.draw {
            eprint!("{}", panel(now, self.log.colour));
        }
    }
}

impl OutputPin for SimLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.set(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_drops_the_escape_codes_and_names_the_leds() {
        assert!(no_color(Some("1".into())));
        assert!(!no_color(Some("".into())), "an empty NO_COLOR is unset");
        assert!(!no_color(None));
        let lit = (true, false, true);
        let coloured = panel(lit, true);
        assert!(coloured.contains("\x1b[32m●") && coloured.contains("\x1b[31m●"));
        let plain = panel(lit, false);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("green ●") && plain.contains("amber ○") && plain.contains("red ●"));
    }
}
