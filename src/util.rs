//! Small helpers shared by modules: durations, "did you mean" suggestions, shell quoting.

use std::time::Duration;

/// Parses `90s`, `5m`, `1h30m`, `250ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
    }
    Some(total)
}

/// Formats a duration the way `parse_duration` reads it (`1m30s`, `2.5s` below a minute).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        let s = d.as_secs_f64();
        return if s < 10.0 {
            format!("{s:.1}s")
        } else {
            format!("{secs}s")
        };
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The allowed value nearest to `given`, if one is near enough to be a likely typo: the same
/// letters in another case or spelling (`pod_subnet` for `podSubnet`), or a small edit distance.
pub fn suggest<'a>(given: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let g = norm(given);
    if let Some(a) = allowed.iter().find(|a| norm(a) == g) {
        return Some(a);
    }
    let mut best: Option<(&str, f64)> = None;
    for a in allowed {
        let score = strsim::jaro_winkler(&given.to_ascii_lowercase(), &a.to_ascii_lowercase());
        let d = strsim::levenshtein(&g, &norm(a));
        let close = d <= 1.max(g.len() / 4) && d < g.len();
        if (score >= 0.85 || close) && best.is_none_or(|(_, s)| score > s) {
            best = Some((a, score));
        }
    }
    best.map(|(a, _)| a)
}

/// Quotes a word for a POSIX shell (single quotes; safe for any content).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "m", "5x", "1.5m", "-1s", "5m3", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
    }

    #[test]
    fn suggestions() {
        let fields = ["controlPlane", "hosts", "kubernetes", "ssh", "options"];
        assert_eq!(suggest("controlPlan", &fields), Some("controlPlane"));
        assert_eq!(suggest("control_plane", &fields), Some("controlPlane"));
        assert_eq!(suggest("Hosts", &fields), Some("hosts"));
        assert_eq!(suggest("kubernets", &fields), Some("kubernetes"));
        assert_eq!(suggest("zzz", &fields), None);
        assert_eq!(
            suggest("flanel", &["flannel", "none", "manifest"]),
            Some("flannel")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
