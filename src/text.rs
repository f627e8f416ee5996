//! Free text people type (justifications, tickets, comments, token names) and how it is shown.
//!
//! Two rules, used by every front end:
//! - [`check`] refuses control characters when text comes in (a NUL is refused by Postgres and
//!   silently kept by SQLite; a carriage return or escape sequence rewrites a terminal line).
//!   Multi-line fields keep newline and tab.
//! - [`shown`] neutralises what could make text read differently from what was stored when it is
//!   rendered for a person deciding on it: bidirectional overrides and isolates (U+202A–U+202E,
//!   U+2066–U+2069, which reorder what follows them) and zero-width or otherwise invisible
//!   characters become a visible `[U+XXXX]`. What is stored stays exactly as typed.

use std::borrow::Cow;

/// Single-line (ticket, token name) or multi-line (justification, comment) text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// Characters that change the direction of the text around them.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that render as nothing (or nearly nothing) but make two strings differ: zero-width
/// spaces and joiners, word joiner, invisible operators, byte-order mark, soft hyphen, fillers,
/// tag characters, and the bidirectional controls.
pub fn is_invisible(c: char) -> bool {
    is_bidi_control(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Refuses control characters (C0, DEL, C1) and the Unicode line and paragraph separators; a
/// multi-line field keeps newline and tab (a carriage return only as part of CR LF, which a
/// browser sends for every line break of a text area). The message names the field and the
/// character's code point, never the text itself.
pub fn check(field: &str, value: &str, lines: Lines) -> Result<(), String> {
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let allowed = match c {
            '\n' | '\t' => lines == Lines::Many,
            '\r' => lines == Lines::Many && chars.peek() == Some(&'\n'),
            '\u{2028}' | '\u{2029}' => false,
            c => !c.is_control(),
        };
        if !allowed {
            return Err(format!(
                "{field} contains a control character (U+{:04X}); {}",
                u32::from(c),
                match lines {
                    Lines::One => "use printable text on one line",
                    Lines::Many => "only printable text, line breaks and tabs are accepted",
                }
            ));
        }
    }
    Ok(())
}

/// Text as it is shown to people: bidirectional controls and invisible characters become a
/// visible `[U+XXXX]` marker, and control characters (which [`check`] keeps out of new input, but
/// older rows may hold) are marked the same way, except line breaks (LF, CR LF) and tab.
/// Borrowed when nothing needs changing.
pub fn shown(s: &str) -> Cow<'_, str> {
    let needs = |c: char, next: Option<char>| {
        is_invisible(c)
            || (c.is_control() && c != '\n' && c != '\t' && !(c == '\r' && next == Some('\n')))
    };
    let mut chars = s.chars().peekable();
    let mut out: Option<String> = None;
    let mut at = 0;
    while let Some(c) = chars.next() {
        if needs(c, chars.peek().copied()) {
            let out = out.get_or_insert_with(|| {
                let mut o = String::with_capacity(s.len() + 16);
                o.push_str(&s[..at]);
                o
            });
            out.push_str(&format!("[U+{:04X}]", u32::from(c)));
        } else if let Some(out) = &mut out {
            out.push(c);
        }
        at += c.len_utf8();
    }
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(s),
    }
}

/// [`shown`] into an owned string, for view structs.
pub fn shown_owned(s: &str) -> String {
    shown(s).into_owned()
}

/// A time as people read it everywhere (pages, emails, the CLI): `2026-12-03 06:34 UTC`.
pub fn when(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_with_the_code_point_not_the_text() {
        for (value, lines) in [
            ("INC-1\0", Lines::One),
            ("a\nb", Lines::One),
            ("a\tb", Lines::One),
            ("deploy\0fix", Lines::Many),
            ("x\u{1b}[2Jy", Lines::Many),
            ("over\rwrite", Lines::Many),
            ("a\u{7f}", Lines::Many),
            ("a\u{85}", Lines::Many),
            ("a\u{2028}b", Lines::Many),
        ] {
            let err = check("ticket", value, lines).unwrap_err();
            assert!(
                err.starts_with("ticket contains a control character (U+"),
                "{err}"
            );
            assert!(!err.contains('\0'));
        }
        assert!(
            check(
                "justification",
                "line one\r\nline two\n\tindented",
                Lines::Many
            )
            .is_ok()
        );
        assert!(check("ticket", "INC-42 (ünïcødé, 日本)", Lines::One).is_ok());
        // Invisible characters are not refused here: they are neutralised when shown.
        assert!(check("ticket", "INC\u{200B}-42", Lines::One).is_ok());
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_shown_visibly() {
        assert_eq!(shown("approve \u{202E}gnp.exe"), "approve [U+202E]gnp.exe");
        assert_eq!(shown("a\u{2066}b\u{2069}c"), "a[U+2066]b[U+2069]c");
        assert_eq!(shown("bob\u{200B}@x.com"), "bob[U+200B]@x.com");
        assert_eq!(shown("\u{FEFF}x\u{2060}"), "[U+FEFF]x[U+2060]");
        assert_eq!(shown("old\0row"), "old[U+0000]row");
        assert_eq!(shown("over\rwrite\r\nnext"), "over[U+000D]write\r\nnext");
        assert_eq!(shown("ends\r"), "ends[U+000D]");
        for c in ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'] {
            assert!(shown(&c.to_string()).starts_with("[U+202"));
        }
        for c in '\u{2066}'..='\u{2069}' {
            assert!(shown(&c.to_string()).starts_with("[U+206"));
        }
        // Ordinary text, line breaks and non-Latin scripts are untouched (and not copied).
        let plain = "deploy hotfix\r\n\tfor INC-42 — ünïcødé, العربية, 日本";
        assert!(matches!(shown(plain), Cow::Borrowed(_)));
        assert_eq!(shown(plain), plain);
    }
}
