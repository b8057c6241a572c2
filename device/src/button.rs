//! The push button: debouncing and short / long press detection.
//!
//! [`Button::poll`] samples an [`InputPin`] and returns at most one
//! [`Press`] per physical press: [`Press::Long`] as soon as the button has
//! been held for `long_press_ms` (the radiographer sees the answer without
//! letting go), or [`Press::Short`] when it is released earlier. A level
//! must hold for `debounce_ms` before it counts, so contact bounce and
//! electrical spikes shorter than that are ignored.

use embedded_hal::digital::InputPin;

/// What a press meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Press {
    /// Pressed and released before the long-press time.
    Short,
    /// Held for the long-press time.
    Long,
}

/// Button timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ButtonTiming {
    /// A level must be stable this long to count.
    pub debounce_ms: u64,
    /// Held this long, a press is a long press.
    pub long_press_ms: u64,
}

impl Default for ButtonTiming {
    fn default() -> Self {
        ButtonTiming {
            debounce_ms: 30,
            long_press_ms: 2000,
        }
    }
}

/// A debounced button on an input pin.
#[derive(Debug)]
pub struct Button<P> {
    pin: P,
    active_low: bool,
    timing: ButtonTiming,
    /// The debounced state: pressed or not.
    pressed: bool,
    /// A raw level that differs from `pressed`, and since when.
    candidate_since: Option<u64>,
    /// When the current press was accepted.
    pressed_at: u64,
    /// Whether the current press has already produced a long press.
    long_sent: bool,
}

impl<P: InputPin> Button<P> {
    /// A button on `pin`; `active_low` when pressing pulls the pin low.
    pub fn new(pin: P, active_low: bool, timing: ButtonTiming) -> Self {
        Button {
            pin,
            active_low,
            timing,
            pressed: false,
            candidate_since: None,
            pressed_at: 0,
            long_sent: false,
        }
    }

    /// Sample the pin at `now_ms`; returns a press when one completes.
    pub fn poll(&mut self, now_ms: u64) -> Result<Option<Press>, P::Error> {
        let high = self.pin.is_high()?;
        let raw_pressed = high != self.active_low;
        if raw_pressed == self.pressed {
            self.candidate_since = None;
        } else {
            let since = *self.candidate_since.get_or_insert(now_ms);
            if now_ms - since >= self.timing.debounce_ms {
                self.pressed = raw_pressed;
                self.candidate_since = None;
                if raw_pressed {
                    self.pressed_at = since;
                    self.long_sent = false;
                } else if !self.long_sent {
                    return Ok(Some(Press::Short));
                }
            }
        }
        if self.pressed && !self.long_sent && now_ms - self.pressed_at >= self.timing.long_press_ms
        {
            self.long_sent = true;
            return Ok(Some(Press::Long));
        }
        Ok(None)
    }

    /// Give the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}
