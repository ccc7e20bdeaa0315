//! Password strength checks with zxcvbn: estimates how many guesses a password would take
//! (dictionaries, keyboard patterns, dates, the user's own details) instead of counting
//! character classes.
//!
//! zxcvbn's matching grows faster than linearly with length; the service caps passwords at 128
//! characters before they get here (the `strength_of_128_chars_is_measured` test prints how long
//! that worst case takes). Like hashing, call it off the async runtime threads.

use zxcvbn::zxcvbn;

/// zxcvbn's best score (guesses ≥ 10^10).
pub const MAX_STRENGTH_SCORE: u8 = 4;

/// A password refused by [`check_strength`], with a reason fit to show to the person choosing it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("password is too weak (strength {score} of 4): {reason}")]
pub struct WeakPassword {
    /// zxcvbn's score, 0 (guessed within 10^3 tries) to 4 (more than 10^10).
    pub score: u8,
    /// zxcvbn's warning and suggestions, or a generic explanation when it has none.
    pub reason: String,
}

/// Refuses `password` if its zxcvbn score is below `min_score` (0-4; larger values act as 4, so
/// a misconfiguration cannot refuse every password). `user_inputs` are words specific to this
/// user or deployment (email, name, organisation, product name): a password built from them
/// scores as easy to guess. Each input is also split at non-alphanumeric characters, so the
/// parts of `alice.smith@example.com` count on their own.
pub fn check_strength(
    password: &str,
    user_inputs: &[&str],
    min_score: u8,
) -> Result<(), WeakPassword> {
    let min_score = min_score.min(MAX_STRENGTH_SCORE);
    let inputs = expand_inputs(user_inputs);
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let entropy = zxcvbn(password, &inputs);
    let score = u8::from(entropy.score());
    if score >= min_score {
        return Ok(());
    }
    let mut reason = Vec::new();
    if let Some(feedback) = entropy.feedback() {
        if let Some(warning) = feedback.warning() {
            reason.push(warning.to_string());
        }
        reason.extend(feedback.suggestions().iter().map(ToString::to_string));
    }
    if reason.is_empty() {
        reason.push(
            "This password would be too easy to guess. Use a longer one, for example several \
             unrelated words."
                .to_owned(),
        );
    }
    Err(WeakPassword {
        score,
        reason: reason.join(" "),
    })
}

/// Each input whole, plus its alphanumeric parts of 3 or more characters, without repeats.
fn expand_inputs(user_inputs: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut add = |word: &str| {
        let word = word.trim().to_lowercase();
        if !word.is_empty() && !all.contains(&word) {
            all.push(word);
        }
    };
    for input in user_inputs {
        add(input);
        for part in input.split(|c: char| !c.is_alphanumeric()) {
            if part.chars().count() >= 3 {
                add(part);
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Instant;

    use super::*;

    #[test]
    fn common_password_is_refused_with_a_reason() {
        let err = check_strength("password123", &[], 3).unwrap_err();
        assert!(err.score < 3, "{err:?}");
        assert!(!err.reason.is_empty());
        assert!(
            err.reason.to_lowercase().contains("common"),
            "reason names the problem: {}",
            err.reason
        );
        assert!(err.to_string().contains(&err.reason));
    }

    #[test]
    fn random_passphrase_is_accepted() {
        check_strength("vX7#qL2!mR9@tZ4$wK8p", &[], 3).unwrap();
        check_strength("correct-horse-battery-staple-orbit", &[], 3).unwrap();
    }

    #[test]
    fn the_users_own_email_is_refused() {
        let email = "rosalind.quennell@northwind-example.org";
        assert!(
            check_strength(email, &[], 3).is_ok(),
            "precondition: strong without the user's details"
        );
        let err = check_strength(email, &[email], 3).unwrap_err();
        assert!(err.score < 3, "{err:?}");
        assert!(!err.reason.is_empty());
    }

    #[test]
    fn parts_of_user_inputs_count_too() {
        let email = "rosalind.quennell@northwind-example.org";
        for (password, min_score) in [("quennellnorthwind", 3), ("Quennell-Northwind", 4)] {
            assert!(
                check_strength(password, &[], min_score).is_ok(),
                "precondition: {password} is strong without the user's details"
            );
            assert!(
                check_strength(password, &[email], min_score).is_err(),
                "{password} is made of parts of the email"
            );
        }
    }

    #[test]
    fn min_score_bounds() {
        check_strength("", &[], 0).unwrap();
        let err = check_strength("", &[], 1).unwrap_err();
        assert_eq!(err.score, 0);
        assert!(
            !err.reason.is_empty(),
            "generic reason when zxcvbn has none"
        );
        // Above 4 acts as 4: the strongest passwords still pass.
        check_strength("vX7#qL2!mR9@tZ4$wK8p-Gh5^nB3&", &[], 200).unwrap();
    }

    #[test]
    fn strength_of_128_chars_is_measured() {
        let inputs = ["someone@example.com", "Someone Else", "Example Org"];
        let cases = [
            ("random", "kT9!vB2#qW7$zL4%".repeat(8)),
            ("repeated", "a".repeat(128)),
            (
                "words",
                "correct horse battery staple ".repeat(5)[..128].to_owned(),
            ),
            ("digits", "1234567890".repeat(13)[..128].to_owned()),
            ("dates", "1.1.91/".repeat(19)[..128].to_owned()),
            ("keyboard", "qwertyuiop".repeat(13)[..128].to_owned()),
            (
                "mixed",
                "Tr0ub4dor&3passw0rd1991".repeat(6)[..128].to_owned(),
            ),
        ];
        for (name, password) in cases {
            assert_eq!(password.chars().count(), 128);
            let started = Instant::now();
            let result = check_strength(&password, &inputs, 3);
            println!(
                "zxcvbn on 128 chars ({name}): {:?}, ok={}",
                started.elapsed(),
                result.is_ok()
            );
        }
    }
}
