//! The appliance's behaviour, free of hardware and time sources.
//!
//! The [`Controller`] is a small state machine:
//!
//! ```text
//!            short press                 outcome
//!   Idle ───────────────────▶ Busy ─────────────────▶ Result / Error
//!    ▲  long press: show the last result again            │
//!    └────────────────────────────────────────────────────┘
//!                     after `show_ms`
//!
//!   Result ── disagree press ──▶ Acknowledged ── after `ack_ms` ──▶ Idle
//!
//!   any ── fault (model refused at start-up) ──▶ Fault   (until shutdown)
//! ```
//!
//! It is told about presses and classification outcomes, answers with a
//! [`Command`] when work must start, and says which [`Pattern`] the LEDs
//! should show. Presses while busy are ignored (one scan at a time).

use scanside_shared::audit::{Decision, ErrorKind};

use crate::leds::Pattern;

/// How the controller decides and how long it shows things.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ControllerConfig {
    /// The model's threshold on the tumour probability.
    pub threshold: f32,
    /// Half-width of the amber "uncertain" band around the threshold, in
    /// log-odds (see [`decide`]).
    pub uncertain_log_odds: f32,
    /// How long a result or an error stays lit.
    pub show_ms: u64,
}

/// How long the "disagreement recorded" pattern shows, milliseconds.
pub const ACK_MS: u64 = 1500;

/// What the caller must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Classify the newest unclassified scan, then report the outcome.
    ClassifyNewest,
    /// Record that the radiographer disputes the result being shown (the
    /// last classification).
    Dispute,
}

/// The end of one classification.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A probability for the scan.
    Classified {
        /// Tumour probability.
        probability: f32,
    },
    /// The model's guard refused the scan: no answer.
    OutOfScope,
    /// No decision, and why.
    Failed(ErrorKind),
}

/// The state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum State {
    /// Waiting for a press.
    Idle,
    /// Classifying.
    Busy,
    /// Showing a decision.
    Result(Decision),
    /// Showing an error.
    Error(ErrorKind),
    /// Out of service (the model was refused): the error pattern stays and
    /// presses are ignored until the program is restarted.
    Fault(ErrorKind),
    /// A disagreement with the shown result was recorded.
    Acknowledged,
}

/// The decision for `probability` at `threshold`: amber ("uncertain") when
/// the two are within `band_log_odds` of each other in log-odds,
/// `|logit(p) − logit(t)| < band`, else red at or above the threshold and
/// green below it. A band in log-odds scales with the threshold: a triage
/// model's threshold sits near 0 (0.0295 for the shipped model, 0.027 for
/// one trained with `--crop --asymmetry left-right`), where a fixed ±0.03
/// in probability would turn every "no tumour" amber. A probability that is
/// not a number is uncertain.
pub fn decide(probability: f32, threshold: f32, band_log_odds: f32) -> Decision {
    let logit = |p: f32| (f64::from(p) / (1.0 - f64::from(p))).ln();
    if probability.is_nan() || (logit(probability) - logit(threshold)).abs() < band_log_odds.into()
    {
        Decision::Uncertain
    } else if probability >= threshold {
        Decision::TumourSuspected
    } else {
        Decision::NoTumour
    }
}

/// The state machine.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    state: State,
    since_ms: u64,
    last: Option<State>,
    /// The last result has been disputed already.
    disputed: bool,
}

impl Controller {
    /// Decide with another model's threshold from now on (a model change
    /// in a running appliance).
    pub fn set_threshold(&mut self, threshold: f32) {
        self.config.threshold = threshold;
    }

    /// Start idle at `now_ms`.
    pub fn new(config: ControllerConfig, now_ms: u64) -> Self {
        Controller {
            config,
            state: State::Idle,
            since_ms: now_ms,
            last: None,
            disputed: false,
        }
    }

    fn enter(&mut self, state: State, now_ms: u64) {
        self.state = state;
        self.since_ms = now_ms;
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Go out of service: the error pattern stays on.
    pub fn on_fault(&mut self, kind: ErrorKind, now_ms: u64) {
        self.enter(State::Fault(kind), now_ms);
    }

    fn accepts_presses(&self) -> bool {
        !matches!(self.state, State::Busy | State::Fault(_))
    }

    /// A short press: classify, unless busy or out of service.
    pub fn on_short_press(&mut self, now_ms: u64) -> Option<Command> {
        if !self.accepts_presses() {
            return None;
        }
        self.enter(State::Busy, now_ms);
        Some(Command::ClassifyNewest)
    }

    /// A long press: show the last result again (an error pattern if there
    /// is none yet); ignored while busy or out of service.
    pub fn on_long_press(&mut self, now_ms: u64) {
        if !self.accepts_presses() {
            return;
        }
        let again = self.last.unwrap_or(State::Error(ErrorKind::NoScan));
        self.enter(again, now_ms);
    }

    /// A press of the "disagree" button: while a result is shown (also one
    /// shown again by a long press), dispute it once; ignored otherwise
    /// (nothing to dispute, an error, busy, out of service, or already
    /// disputed).
    pub fn on_disagree_press(&mut self, now_ms: u64) -> Option<Command> {
        if !matches!(self.state, State::Result(_)) || self.disputed {
            return None;
        }
        self.disputed = true;
        self.enter(State::Acknowledged, now_ms);
        Some(Command::Dispute)
    }

    /// The outcome of the last [`Command::ClassifyNewest`]; returns the
    /// decision shown, if any.
    pub fn on_outcome(&mut self, outcome: &Outcome, now_ms: u64) -> Option<Decision> {
        let (state, decision) = match *outcome {
            Outcome::Classified { probability } => {
                let d = decide(
                    probability,
                    self.config.threshold,
                    self.config.uncertain_log_odds,
                );
                (State::Result(d), Some(d))
            }
            Outcome::OutOfScope => (
                State::Result(Decision::OutOfScope),
                Some(Decision::OutOfScope),
            ),
            Outcome::Failed(kind) => (State::Error(kind), None),
        };
        if decision.is_some() {
            self.last = Some(state);
            self.disputed = false;
        }
        self.enter(state, now_ms);
        decision
    }

    /// Let time pass: results and errors go back to idle after `show_ms`,
    /// the acknowledgement after [`ACK_MS`].
    pub fn tick(&mut self, now_ms: u64) {
        let shown = now_ms - self.since_ms;
        let done = match self.state {
            State::Result(_) | State::Error(_) => shown >= self.config.show_ms,
            State::Acknowledged => shown >= ACK_MS,
            _ => false,
        };
        if done {
            self.enter(State::Idle, now_ms);
        }
    }

    /// The LED pattern now and when it started.
    pub fn pattern(&self) -> (Pattern, u64) {
        let p = match self.state {
            State::Idle => Pattern::Idle,
            State::Busy => Pattern::Busy,
            State::Result(d) => Pattern::Result(d),
            State::Error(_) | State::Fault(_) => Pattern::Error,
            State::Acknowledged => Pattern::Acknowledge,
        };
        (p, self.since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ControllerConfig = ControllerConfig {
        threshold: 0.5,
        uncertain_log_odds: 0.4,
        show_ms: 1000,
    };

    #[test]
    fn decisions_around_the_threshold() {
        // logit(0.6) = 0.405, logit(0.55) = 0.201.
        assert_eq!(decide(0.95, 0.5, 0.4), Decision::TumourSuspected);
        assert_eq!(decide(0.6, 0.5, 0.4), Decision::TumourSuspected);
        assert_eq!(decide(0.55, 0.5, 0.4), Decision::Uncertain);
        assert_eq!(decide(0.45, 0.5, 0.4), Decision::Uncertain);
        assert_eq!(decide(0.39, 0.5, 0.4), Decision::NoTumour);
        assert_eq!(decide(0.5, 0.5, 0.0), Decision::TumourSuspected);
        assert_eq!(decide(f32::NAN, 0.5, 0.0), Decision::Uncertain);
    }

    /// At a triage threshold near 0 the band stays around the threshold:
    /// a scan the model is sure of is green, not amber.
    #[test]
    fn a_low_threshold_keeps_its_band_narrow() {
        let t = 0.027;
        assert_eq!(decide(0.0, t, 0.5), Decision::NoTumour);
        assert_eq!(decide(0.001, t, 0.5), Decision::NoTumour);
        assert_eq!(decide(0.016, t, 0.5), Decision::NoTumour);
        assert_eq!(decide(0.018, t, 0.5), Decision::Uncertain);
        assert_eq!(decide(0.04, t, 0.5), Decision::Uncertain);
        assert_eq!(decide(0.045, t, 0.5), Decision::TumourSuspected);
        assert_eq!(decide(1.0, t, 0.5), Decision::TumourSuspected);
    }

    #[test]
    fn presses_while_busy_are_ignored() {
        let mut c = Controller::new(CONFIG, 0);
        assert_eq!(c.on_short_press(10), Some(Command::ClassifyNewest));
        assert_eq!(c.on_short_press(20), None);
        c.on_long_press(30);
        assert_eq!(c.state(), State::Busy);
    }

    #[test]
    fn errors_show_then_idle_and_do_not_replace_the_last_result() {
        let mut c = Controller::new(CONFIG, 0);
        c.on_short_press(0);
        c.on_outcome(&Outcome::Classified { probability: 0.1 }, 100);
        c.on_short_press(200);
        assert_eq!(
            c.on_outcome(&Outcome::Failed(ErrorKind::UnreadableScan), 300),
            None
        );
        assert_eq!(c.state(), State::Error(ErrorKind::UnreadableScan));
        assert_eq!(c.pattern().0, Pattern::Error);
        c.tick(1299);
        assert_eq!(c.state(), State::Error(ErrorKind::UnreadableScan));
        c.tick(1300);
        assert_eq!(c.state(), State::Idle);
        c.on_long_press(2000);
        assert_eq!(c.state(), State::Result(Decision::NoTumour));
    }

    #[test]
    fn disagree_disputes_a_shown_result_once() {
        let mut c = Controller::new(CONFIG, 0);
        // Nothing shown yet: nothing to dispute.
        assert_eq!(c.on_disagree_press(5), None);
        c.on_short_press(10);
        assert_eq!(c.on_disagree_press(20), None, "busy");
        c.on_outcome(&Outcome::Classified { probability: 0.9 }, 100);
        assert_eq!(c.on_disagree_press(200), Some(Command::Dispute));
        assert_eq!(c.state(), State::Acknowledged);
        assert_eq!(c.pattern().0, Pattern::Acknowledge);
        c.tick(200 + ACK_MS - 1);
        assert_eq!(c.state(), State::Acknowledged);
        c.tick(200 + ACK_MS);
        assert_eq!(c.state(), State::Idle);
        // Shown again by a long press: already disputed, not twice.
        c.on_long_press(2000);
        assert_eq!(c.state(), State::Result(Decision::TumourSuspected));
        assert_eq!(c.on_disagree_press(2100), None);
        // A new result can be disputed; an error cannot.
        c.on_short_press(3000);
        c.on_outcome(&Outcome::Failed(ErrorKind::NoScan), 3100);
        assert_eq!(c.on_disagree_press(3200), None);
        c.on_short_press(4000);
        c.on_outcome(&Outcome::Classified { probability: 0.1 }, 4100);
        assert_eq!(c.on_disagree_press(4200), Some(Command::Dispute));
    }

    #[test]
    fn a_fault_stays_and_ignores_presses() {
        let mut c = Controller::new(CONFIG, 0);
        c.on_fault(ErrorKind::ModelFailure, 0);
        assert_eq!(c.on_short_press(10), None);
        assert_eq!(c.on_disagree_press(15), None);
        c.on_long_press(20);
        c.tick(1_000_000);
        assert_eq!(c.state(), State::Fault(ErrorKind::ModelFailure));
        assert_eq!(c.pattern().0, Pattern::Error);
    }
}
