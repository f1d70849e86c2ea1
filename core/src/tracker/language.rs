//! Language of an inquiry: `Content-Language`, else restricted text detection, else the default.
//!
//! Owns the one decision "which of en/es/ar is this text in, and how do we know". The text is
//! the parser's sample (subject plus the sender's own first lines). Detection is restricted to
//! the desk's three languages: unrestricted, short greetings come out as Esperanto or Persian.

use whatlang::{Detector, Lang};

use crate::domain::Language;
use crate::tracker::event::LanguageSource;

/// Minimum whatlang confidence (with the en/es/ar allowlist) to trust the text.
///
/// Measured on the allowlisted detector: full sentences in any of the three languages score
/// 1.00; a short but real Spanish request such as "Necesito ayuda con mi factura" scores about
/// 0.36 (and is right); one-word greetings ("Hola", "Thanks!") score about 0.17 and are coin
/// tosses. 0.3 keeps the short real requests and sends greetings to the configured default.
/// `is_reliable()` is never used: it rejects nearly every short text, even correct ones.
pub const MIN_CONFIDENCE: f64 = 0.3;

/// Decides the language of a message: the first `en`/`es`/`ar` tag of `Content-Language`
/// (`Header`); else any Arabic-script letter (`Text`, Arabic); else restricted detection on
/// `text` at [`MIN_CONFIDENCE`] (`Text`); else `default` (`Default`).
pub fn detect_language(
    content_language: Option<&str>,
    text: &str,
    default: Language,
) -> (Language, LanguageSource) {
    if let Some(lang) = content_language
        .into_iter()
        .flat_map(|v| v.split(','))
        .find_map(Language::parse)
    {
        return (lang, LanguageSource::Header);
    }
    if text.chars().any(is_arabic_letter) {
        return (Language::Ar, LanguageSource::Text);
    }
    let detector = Detector::with_allowlist(vec![Lang::Eng, Lang::Spa, Lang::Ara]);
    match detector.detect(text) {
        Some(info) if info.confidence() >= MIN_CONFIDENCE => match info.lang() {
            Lang::Eng => (Language::En, LanguageSource::Text),
            Lang::Spa => (Language::Es, LanguageSource::Text),
            Lang::Ara => (Language::Ar, LanguageSource::Text),
            _ => (default, LanguageSource::Default),
        },
        _ => (default, LanguageSource::Default),
    }
}

/// Letters of the Arabic script (Arabic, Supplement, Extended-A, presentation forms), not its
/// digits or punctuation.
fn is_arabic_letter(c: char) -> bool {
    matches!(c,
        '\u{0620}'..='\u{064A}'
        | '\u{066E}'..='\u{06D3}'
        | '\u{06FA}'..='\u{06FC}'
        | '\u{0750}'..='\u{077F}'
        | '\u{08A0}'..='\u{08C9}'
        | '\u{FB50}'..='\u{FDFB}'
        | '\u{FE70}'..='\u{FEFC}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(text: &str) -> (Language, LanguageSource) {
        detect_language(None, text, Language::En)
    }

    #[test]
    fn long_sentences() {
        assert_eq!(
            detect(
                "Since this morning I cannot log in to my account and the password reset email never arrives."
            ),
            (Language::En, LanguageSource::Text)
        );
        assert_eq!(
            detect("Intento descargar la factura de noviembre desde el portal y aparece un error."),
            (Language::Es, LanguageSource::Text)
        );
        assert_eq!(
            detect("لقد دفعت الفاتورة ولكن الحساب ما زال موقوفا"),
            (Language::Ar, LanguageSource::Text)
        );
    }

    #[test]
    fn short_texts_fall_back_to_default() {
        // "Hola" is Spanish at 0.17 and "Thanks!" English at 0.17: too weak to trust.
        assert_eq!(
            detect_language(None, "Hola", Language::Ar),
            (Language::Ar, LanguageSource::Default)
        );
        assert_eq!(
            detect_language(None, "Thanks!", Language::Es),
            (Language::Es, LanguageSource::Default)
        );
        // Wrong guesses on short texts stay under the threshold ("Password reset": Spanish 0.09).
        assert_eq!(
            detect("Password reset"),
            (Language::En, LanguageSource::Default)
        );
        assert_eq!(
            detect_language(None, "", Language::Es),
            (Language::Es, LanguageSource::Default)
        );
    }

    #[test]
    fn short_real_requests_are_detected() {
        assert_eq!(
            detect("Necesito ayuda con mi factura"),
            (Language::Es, LanguageSource::Text)
        );
        assert_eq!(
            detect("Pedido 9912 no llegó"),
            (Language::Es, LanguageSource::Text)
        );
        assert_eq!(
            detect_language(None, "Order not delivered", Language::Es),
            (Language::En, LanguageSource::Text)
        );
    }

    #[test]
    fn any_arabic_letter_means_arabic() {
        assert_eq!(
            detect("Order 12 شكرا"),
            (Language::Ar, LanguageSource::Text)
        );
        assert_eq!(detect("مرحبا"), (Language::Ar, LanguageSource::Text));
    }

    #[test]
    fn header_wins() {
        assert_eq!(
            detect_language(
                Some("es-MX"),
                "Hello, my order did not arrive at all this week.",
                Language::En
            ),
            (Language::Es, LanguageSource::Header)
        );
        assert_eq!(
            detect_language(Some("de-DE, ar-SA"), "Hello", Language::En),
            (Language::Ar, LanguageSource::Header)
        );
        // A header naming none of ours is ignored.
        assert_eq!(
            detect_language(
                Some("fr"),
                "Gracias por todo, el pedido llegó bien.",
                Language::En
            ),
            (Language::Es, LanguageSource::Text)
        );
    }

    #[test]
    fn mixed_text_goes_by_majority() {
        assert_eq!(
            detect(
                "Hola, the invoice I received yesterday has the wrong address and the wrong amount."
            ),
            (Language::En, LanguageSource::Text)
        );
    }
}
