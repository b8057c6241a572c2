//! The three LEDs and the patterns they show.
//!
//! [`Pattern`] is what the box wants to say; [`Pattern::lamps`] turns it
//! into on/off for green, amber and red at a given time (blinking, the idle
//! heartbeat); [`LedPanel`] drives three [`OutputPin`]s, honouring
//! active-low wiring and writing a pin only when its state changes.

use embedded_hal::digital::{OutputPin, PinState};

use scanside_shared::audit::Decision;

/// What the LEDs show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// All dark.
    Off,
    /// Waiting: a short green blink every 2 s.
    Idle,
    /// Classifying: amber blinking at 2 Hz.
    Busy,
    /// A decision: green, amber or red, steady; out of scope, amber and red
    /// taking turns once a second (no answer).
    Result(Decision),
    /// Something went wrong: red blinking fast (5 Hz).
    Error,
    /// A disagreement was recorded: all three lamps flash twice.
    Acknowledge,
}

/// On/off for (green, amber, red).
pub type Lamps = (bool, bool, bool);

impl Pattern {
    /// The lamps at `t_ms` after the pattern started.
    pub fn lamps(self, t_ms: u64) -> Lamps {
        match self {
            Pattern::Off => (false, false, false),
            Pattern::Idle => (t_ms % 2000 < 100, false, false),
            Pattern::Busy => (false, t_ms % 500 < 250, false),
            Pattern::Result(Decision::NoTumour) => (true, false, false),
            Pattern::Result(Decision::Uncertain) => (false, true, false),
            Pattern::Result(Decision::TumourSuspected) => (false, false, true),
            Pattern::Result(Decision::OutOfScope) => {
                let amber = t_ms % 1000 < 500;
                (false, amber, !amber)
            }
            Pattern::Error => (false, false, t_ms % 200 < 100),
            Pattern::Acknowledge => {
                let on = t_ms < 750 && t_ms % 500 < 250;
                (on, on, on)
            }
        }
    }
}

/// Three LEDs on output pins of one type.
#[derive(Debug)]
pub struct LedPanel<L> {
    green: L,
    amber: L,
    red: L,
    active_low: bool,
    shown: Option<Lamps>,
}

impl<L: OutputPin> LedPanel<L> {
    /// A panel; `active_low` when a low pin lights the LED.
    pub fn new(green: L, amber: L, red: L, active_low: bool) -> Self {
        LedPanel {
            green,
            amber,
            red,
            active_low,
            shown: None,
        }
    }

    /// Show `lamps`, writing only the pins that change.
    pub fn show(&mut self, lamps: Lamps) -> Result<(), L::Error> {
        let old = self.shown;
        let level = |on: bool| PinState::from(on != self.active_low);
        if old.map(|o| o.0) != Some(lamps.0) {
            self.green.set_state(level(lamps.0))?;
        }
        if old.map(|o| o.1) != Some(lamps.1) {
            self.amber.set_state(level(lamps.1))?;
        }
        if old.map(|o| o.2) != Some(lamps.2) {
            self.red.set_state(level(lamps.2))?;
        }
        self.shown = Some(lamps);
        Ok(())
    }

    /// The lamps last shown.
    pub fn shown(&self) -> Option<Lamps> {
        self.shown
    }

    /// Give the pins back.
    pub fn release(self) -> (L, L, L) {
        (self.green, self.amber, self.red)
    }
}
