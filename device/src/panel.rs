//! The front panel: button, LEDs, clock and [`Controller`] wired together,
//! generic over `embedded-hal` pins so any board (or a mock) plugs in.

use embedded_hal::digital::{InputPin, OutputPin};

use crate::button::{Button, ButtonTiming, Press};
use crate::clock::Clock;
use crate::controller::{Command, Controller, ControllerConfig, Outcome, State};
use crate::leds::LedPanel;
use scanside_shared::audit::{Decision, ErrorKind};

/// Button(s), LEDs and behaviour.
#[derive(Debug)]
pub struct Panel<B, L, C> {
    button: Button<B>,
    /// The optional "disagree" button (same polarity and timing).
    disagree: Option<Button<B>>,
    button_active_low: bool,
    timing: ButtonTiming,
    leds: LedPanel<L>,
    clock: C,
    controller: Controller,
}

/// Pin polarity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polarity {
    /// Pressing the button pulls its pin low.
    pub button_active_low: bool,
    /// A low pin lights an LED.
    pub leds_active_low: bool,
}

impl<B, L, C, E> Panel<B, L, C>
where
    B: InputPin<Error = E>,
    L: OutputPin<Error = E>,
    C: Clock,
{
    /// Assemble a panel; nothing is written to the pins yet.
    pub fn new(
        button: B,
        (green, amber, red): (L, L, L),
        clock: C,
        polarity: Polarity,
        timing: ButtonTiming,
        config: ControllerConfig,
    ) -> Self {
        let now = clock.now_ms();
        Panel {
            button: Button::new(button, polarity.button_active_low, timing),
            disagree: None,
            button_active_low: polarity.button_active_low,
            timing,
            leds: LedPanel::new(green, amber, red, polarity.leds_active_low),
            clock,
            controller: Controller::new(config, now),
        }
    }

    /// Decide with another model's threshold from now on.
    pub fn set_threshold(&mut self, threshold: f32) {
        self.controller.set_threshold(threshold);
    }

    /// Add the "disagree" button: any press of it while a result is shown
    /// disputes that result ([`Command::Dispute`]).
    pub fn add_disagree_button(&mut self, pin: B) {
        self.disagree = Some(Button::new(pin, self.button_active_low, self.timing));
    }

    /// Sample the buttons, advance the state machine and refresh the LEDs.
    /// Returns a command when a press asks for work.
    pub fn poll(&mut self) -> Result<Option<Command>, E> {
        let now = self.clock.now_ms();
        let mut command = match self.button.poll(now)? {
            Some(Press::Short) => self.controller.on_short_press(now),
            Some(Press::Long) => {
                self.controller.on_long_press(now);
                None
            }
            None => None,
        };
        if let Some(disagree) = &mut self.disagree
            && disagree.poll(now)?.is_some()
            && command.is_none()
        {
            command = self.controller.on_disagree_press(now);
        }
        self.controller.tick(now);
        self.refresh()?;
        Ok(command)
    }

    /// Report how the last command ended; returns the decision shown.
    pub fn finish(&mut self, outcome: &Outcome) -> Result<Option<Decision>, E> {
        let now = self.clock.now_ms();
        let d = self.controller.on_outcome(outcome, now);
        self.refresh()?;
        Ok(d)
    }

    fn refresh(&mut self) -> Result<(), E> {
        let (pattern, since) = self.controller.pattern();
        let now = self.clock.now_ms();
        self.leds.show(pattern.lamps(now - since))
    }

    /// Go out of service (the model was refused): the error pattern stays
    /// on and presses are ignored.
    pub fn fault(&mut self, kind: ErrorKind) -> Result<(), E> {
        let now = self.clock.now_ms();
        self.controller.on_fault(kind, now);
        self.refresh()
    }

    /// The state machine's state.
    pub fn state(&self) -> State {
        self.controller.state()
    }

    /// All LEDs off (shutdown).
    pub fn dark(&mut self) -> Result<(), E> {
        self.leds.show((false, false, false))
    }

    /// Give the pins back: button, disagree button, LEDs.
    pub fn release(self) -> (B, Option<B>, (L, L, L)) {
        (
            self.button.release(),
            self.disagree.map(Button::release),
            self.leds.release(),
        )
    }
}
