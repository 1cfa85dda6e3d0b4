//! What a call answered: its exit code and the JSON on its stdout.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit_code: i32,
    pub stdout: String,
}

impl Outcome {
    pub(crate) fn new(exit_code: i32, stdout: String) -> Outcome {
        Outcome { exit_code, stdout }
    }

    /// Whether the call succeeded (exit code 0).
    pub fn is_ok(&self) -> bool {
        self.exit_code == 0
    }

    /// The result of a call that must have succeeded (`Null` for the
    /// commands that print nothing); panics with the CNI error otherwise.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.exit_code, 0, "the call failed: {}", self.stdout.trim());
        self.json()
    }

    /// stdout as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// The CNI error of a call that must have failed: (code, msg).
    #[track_caller]
    pub fn err(&self) -> (u64, String) {
        assert_eq!(
            self.exit_code,
            1,
            "the call was to fail and exit 1: {}",
            self.stdout.trim()
        );
        let v = self.json();
        let code = v["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code: {}", self.stdout));
        (code, v["msg"].as_str().unwrap_or_default().to_string())
    }
}
