//! The front panel driven through `embedded-hal-mock` pins and a fake clock:
//! every pin read and write is an expected transaction, so these tests pin
//! down exactly what the hardware sees.

use std::cell::Cell;
use std::rc::Rc;

use embedded_hal_mock::eh1::digital::{Mock, State, Transaction as T};

use scanside_device::button::ButtonTiming;
use scanside_device::clock::Clock;
use scanside_device::controller::{Command, ControllerConfig, Outcome, State as S};
use scanside_device::panel::{Panel, Polarity};
use scanside_shared::audit::{Decision, ErrorKind};

#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<u64>>);

impl FakeClock {
    fn set(&self, ms: u64) {
        self.0.set(ms);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

const CONFIG: ControllerConfig = ControllerConfig {
    threshold: 0.107,
    uncertain_log_odds: 0.5,
    show_ms: 3000,
};

const TIMING: ButtonTiming = ButtonTiming {
    debounce_ms: 30,
    long_press_ms: 2000,
};

/// Button pulls low when pressed, LEDs light when high.
const POLARITY: Polarity = Polarity {
    button_active_low: true,
    leds_active_low: false,
};

fn get(levels: &[State]) -> Vec<T> {
    levels.iter().map(|&l| T::get(l)).collect()
}

fn set(levels: &[State]) -> Vec<T> {
    levels.iter().map(|&l| T::set(l)).collect()
}

use State::{High, Low};

type MockPanel = Panel<Mock, Mock, FakeClock>;

fn panel(
    button: &[State],
    green: &[State],
    amber: &[State],
    red: &[State],
    clock: &FakeClock,
) -> MockPanel {
    Panel::new(
        Mock::new(&get(button)),
        (
            Mock::new(&set(green)),
            Mock::new(&set(amber)),
            Mock::new(&set(red)),
        ),
        clock.clone(),
        POLARITY,
        TIMING,
        CONFIG,
    )
}

fn done(p: MockPanel) {
    let (mut b, disagree, (mut g, mut a, mut r)) = p.release();
    b.done();
    if let Some(mut d) = disagree {
        d.done();
    }
    g.done();
    a.done();
    r.done();
}

/// Press, classify, show the decision, return to idle, checking every pin
/// write on the way.
fn press_and_decide(probability: f32, decision: Decision) {
    let clock = FakeClock::default();
    // Lamps: idle heartbeat (green on at t=0, off at t=120), busy (amber),
    // the decision, then idle again (green on).
    let (green, amber, red): (Vec<State>, Vec<State>, Vec<State>) = match decision {
        Decision::NoTumour => (vec![High, Low, High], vec![Low, High, Low], vec![Low]),
        Decision::Uncertain => (vec![High, Low, High], vec![Low, High, Low], vec![Low]),
        Decision::TumourSuspected => (
            vec![High, Low, High],
            vec![Low, High, Low],
            vec![Low, High, Low],
        ),
        Decision::OutOfScope => unreachable!("a probability never decides out of scope"),
    };
    let mut p = panel(
        &[High, Low, Low, High, High, High],
        &green,
        &amber,
        &red,
        &clock,
    );
    assert_eq!(p.poll().unwrap(), None); // t=0: idle, heartbeat on
    clock.set(10);
    assert_eq!(p.poll().unwrap(), None); // pressed, bouncing window
    clock.set(50);
    assert_eq!(p.poll().unwrap(), None); // press accepted
    clock.set(120);
    assert_eq!(p.poll().unwrap(), None); // released (not yet debounced); heartbeat off
    clock.set(160);
    assert_eq!(p.poll().unwrap(), Some(Command::ClassifyNewest));
    assert_eq!(p.state(), S::Busy);
    clock.set(400);
    let shown = p.finish(&Outcome::Classified { probability }).unwrap();
    assert_eq!(shown, Some(decision));
    assert_eq!(p.state(), S::Result(decision));
    clock.set(3400);
    assert_eq!(p.poll().unwrap(), None);
    assert_eq!(p.state(), S::Idle);
    done(p);
}

#[test]
fn short_press_shows_red_for_a_suspected_tumour() {
    press_and_decide(0.9, Decision::TumourSuspected);
}

#[test]
fn short_press_shows_green_for_no_tumour() {
    press_and_decide(0.01, Decision::NoTumour);
}

#[test]
fn short_press_shows_amber_near_the_threshold() {
    press_and_decide(0.12, Decision::Uncertain);
}

#[test]
fn a_glitch_shorter_than_the_debounce_is_not_a_press() {
    let clock = FakeClock::default();
    let mut p = panel(&[High, Low, High, High], &[High], &[Low], &[Low], &clock);
    for t in [0, 5, 20, 80] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None, "t = {t}");
    }
    assert_eq!(p.state(), S::Idle);
    done(p);
}

#[test]
fn long_press_shows_the_last_result_again_and_errors_blink_red() {
    let clock = FakeClock::default();
    // t=0 idle; t=10..60 press accepted; t=2060 long press → no result yet:
    // error (red blinking: on at 2060, off at 2160); t=5160 idle again.
    let mut p = panel(
        &[High, Low, Low, Low, Low, High, High, High],
        &[High, Low, High],
        &[Low],
        &[Low, High, Low],
        &clock,
    );
    for (t, want) in [(0, S::Idle), (10, S::Idle), (60, S::Idle)] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None);
        assert_eq!(p.state(), want);
    }
    clock.set(2060);
    assert_eq!(p.poll().unwrap(), None, "a long press starts no work");
    assert_eq!(p.state(), S::Error(ErrorKind::NoScan));
    clock.set(2160);
    assert_eq!(p.poll().unwrap(), None); // still held; red blinks off
    clock.set(2200);
    assert_eq!(p.poll().unwrap(), None); // released: no short press after a long one
    clock.set(2240);
    assert_eq!(p.poll().unwrap(), None);
    assert_eq!(p.state(), S::Error(ErrorKind::NoScan));
    clock.set(5160);
    assert_eq!(p.poll().unwrap(), None);
    assert_eq!(p.state(), S::Idle);
    done(p);
}

#[test]
fn a_press_with_no_scan_blinks_red_then_idles() {
    let clock = FakeClock::default();
    let mut p = panel(
        &[High, Low, Low, High, High, High, High],
        &[High, Low, High],
        &[Low, High, Low],
        &[Low, High, Low],
        &clock,
    );
    for t in [0, 10, 50, 120] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None);
    }
    clock.set(160);
    assert_eq!(p.poll().unwrap(), Some(Command::ClassifyNewest));
    clock.set(200);
    let shown = p.finish(&Outcome::Failed(ErrorKind::NoScan)).unwrap();
    assert_eq!(shown, None, "an error is not a decision");
    assert_eq!(p.state(), S::Error(ErrorKind::NoScan));
    clock.set(300);
    assert_eq!(p.poll().unwrap(), None); // red blinks off
    clock.set(3200);
    assert_eq!(p.poll().unwrap(), None);
    assert_eq!(p.state(), S::Idle);
    done(p);
}

#[test]
fn a_refused_model_keeps_red_blinking_and_ignores_presses() {
    let clock = FakeClock::default();
    let mut p = panel(
        &[High, Low, Low, High, High, High],
        &[High, Low],
        &[Low],
        &[Low, High, Low, High, Low],
        &clock,
    );
    assert_eq!(p.poll().unwrap(), None);
    clock.set(10);
    p.fault(ErrorKind::ModelFailure).unwrap();
    for t in [100, 150, 200, 250, 5000] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None, "t = {t}: a press starts no work");
    }
    assert_eq!(p.state(), S::Fault(ErrorKind::ModelFailure));
    done(p);
}

/// The disagree button: pressed while a result is shown, it asks for a
/// dispute and all three lamps flash twice, then the panel idles.
#[test]
fn disagree_while_a_result_shows_disputes_it_and_flashes_all_lamps() {
    let clock = FakeClock::default();
    let mut p = panel(
        &[
            High, Low, Low, High, High, High, High, High, High, High, High, High, High,
        ],
        &[High, Low, High, Low, High, Low, High],
        &[Low, High, Low, High, Low, High, Low],
        &[Low, High, Low, High, Low],
        &clock,
    );
    p.add_disagree_button(Mock::new(&get(&[
        High, High, High, High, High, Low, Low, High, High, High, High, High, High,
    ])));
    // Press and release the classify button (as in `press_and_decide`).
    for t in [0, 10, 50, 120] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None);
    }
    clock.set(160);
    assert_eq!(p.poll().unwrap(), Some(Command::ClassifyNewest));
    clock.set(200);
    assert_eq!(
        p.finish(&Outcome::Classified { probability: 0.9 }).unwrap(),
        Some(Decision::TumourSuspected)
    );
    // Disagree: pressed at 300, debounced at 340, released at 400, acted on at 440.
    for t in [300, 340, 400] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None);
    }
    clock.set(440);
    assert_eq!(p.poll().unwrap(), Some(Command::Dispute));
    assert_eq!(p.state(), S::Acknowledged);
    // All lamps flash twice (on at 0 and 500 ms, off at 250 and 750 ms).
    for t in [700, 940, 1200] {
        clock.set(t);
        assert_eq!(p.poll().unwrap(), None);
    }
    clock.set(1940);
    assert_eq!(p.poll().unwrap(), None);
    assert_eq!(p.state(), S::Idle);
    done(p);
}
