//! Board backends: real pins for the [`Panel`](crate::panel::Panel).
//!
//! Each backend turns the `[pins]` section of the configuration into one
//! input pin (the button) and three output pins (green, amber, red) that
//! implement the `embedded-hal` traits; everything above this module is the
//! same on every board. Backends are cargo features, so a laptop build
//! pulls in no GPIO code:
//!
//! - `rpi`: Raspberry Pi through `rppal` (BCM numbering; the button gets
//!   the SoC's internal pull-up or pull-down to match `button_active_low`).
//!   rppal is archived upstream but still works on Pi 1–5.
//! - `cdev`: any Linux board through the GPIO character device
//!   (`/dev/gpiochipN`, line offsets) with `linux-embedded-hal`'s
//!   `CdevPin`: Jetson, Pi 5, and others. The character device's v1
//!   interface sets no bias, so the button needs an external pull-up (or
//!   pull-down) resistor; see docs/device.md, "Boards and wiring".
//!
//! The simulated board lives in [`crate::sim`].

/// Check that a configured pin number fits the board's numbering.
#[allow(dead_code)] // used by the optional backends only
fn pin_number(key: &str, n: u32, max: u32) -> crate::Result<u8> {
    match u8::try_from(n) {
        Ok(v) if n <= max => Ok(v),
        _ => Err(crate::Error::Gpio(format!(
            "`pins.{key}` = {n}: this board has pins 0..={max}"
        ))),
    }
}

/// A board's panel pins.
#[derive(Debug)]
pub struct BoardPins<I, O> {
    /// The classify button.
    pub button: I,
    /// The "disagree" button, when `pins.disagree` is set.
    pub disagree: Option<I>,
    /// Green, amber, red.
    pub leds: (O, O, O),
}

/// Raspberry Pi pins through rppal.
#[cfg(feature = "rpi")]
pub mod rpi {
    use rppal::gpio::{Gpio, InputPin, OutputPin};

    use crate::config::Pins;
    use crate::{Error, Result};

    /// The button, the disagree button (if configured) and the (green,
    /// amber, red) LEDs, LEDs off.
    pub fn pins(p: &Pins) -> Result<super::BoardPins<InputPin, OutputPin>> {
        let gpio = Gpio::new().map_err(|e| Error::Gpio(format!("opening the Pi's GPIO: {e}")))?;
        let get = |key: &str, n: u32| {
            let bcm = super::pin_number(key, n, 27)?;
            gpio.get(bcm)
                .map_err(|e| Error::Gpio(format!("`pins.{key}` = BCM {bcm}: {e}")))
        };
        let input = |key: &str, n: u32| -> Result<InputPin> {
            let pin = get(key, n)?;
            Ok(if p.button_active_low {
                pin.into_input_pullup()
            } else {
                pin.into_input_pulldown()
            })
        };
        let button = input("button", p.button)?;
        let disagree = p.disagree.map(|n| input("disagree", n)).transpose()?;
        let led = |key: &str, n: u32| -> Result<OutputPin> {
            let pin = get(key, n)?;
            // Start dark: high is "off" on active-low wiring.
            Ok(if p.leds_active_low {
                pin.into_output_high()
            } else {
                pin.into_output_low()
            })
        };
        Ok(super::BoardPins {
            button,
            disagree,
            leds: (
                led("green", p.green)?,
                led("amber", p.amber)?,
                led("red", p.red)?,
            ),
        })
    }
}

/// Any Linux board through the GPIO character device.
#[cfg(feature = "cdev")]
pub mod cdev {
    use gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::CdevPin;

    use crate::config::Pins;
    use crate::{Error, Result};

    const CONSUMER: &str = "scanside";

    /// The button, the disagree button (if configured) and the (green,
    /// amber, red) LEDs, LEDs off.
    pub fn pins(p: &Pins) -> Result<super::BoardPins<CdevPin, CdevPin>> {
        let chip_err = |e: gpio_cdev::Error| Error::Gpio(format!("{}: {e}", p.chip.display()));
        let mut chip = Chip::new(&p.chip).map_err(chip_err)?;
        let lines = chip.num_lines();
        let mut request = |key: &str, n: u32, flags: LineRequestFlags, value: u8| {
            let offset = u32::from(super::pin_number(key, n, lines.saturating_sub(1))?);
            let wrap = |e: gpio_cdev::Error| {
                Error::Gpio(format!(
                    "`pins.{key}` = line {offset} of {}: {e}",
                    p.chip.display()
                ))
            };
            let handle = chip
                .get_line(offset)
                .and_then(|line| line.request(flags, value, CONSUMER))
                .map_err(wrap)?;
            CdevPin::new(handle).map_err(wrap)
        };
        let off = u8::from(p.leds_active_low);
        let button = request("button", p.button, LineRequestFlags::INPUT, 0)?;
        let disagree = p
            .disagree
            .map(|n| request("disagree", n, LineRequestFlags::INPUT, 0))
            .transpose()?;
        let green = request("green", p.green, LineRequestFlags::OUTPUT, off)?;
        let amber = request("amber", p.amber, LineRequestFlags::OUTPUT, off)?;
        let red = request("red", p.red, LineRequestFlags::OUTPUT, off)?;
        Ok(super::BoardPins {
            button,
            disagree,
            leds: (green, amber, red),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pin_numbers_are_checked_against_the_board() {
        assert_eq!(super::pin_number("red", 27, 27).unwrap(), 27);
        let e = super::pin_number("red", 28, 27).unwrap_err().to_string();
        assert!(e.contains("`pins.red` = 28") && e.contains("0..=27"), "{e}");
        assert!(super::pin_number("button", 300, 1000).is_err());
    }
}
