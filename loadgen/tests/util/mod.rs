//! Shared by the load generator's integration tests.

/// The values of attribute `name` in `html` (double-quoted).
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').expect("closed attribute")]
        })
        .collect()
}

/// Writes `html` to `file` under the test target directory (to look at), checks it is one
/// self-contained page that names `verdict` and has no NaN or infinity in it; returns where it
/// was written, for the caller's own messages.
pub(crate) fn assert_self_contained_page(html: &str, file: &str, verdict: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(file);
    std::fs::write(&path, html).unwrap();
    let at = path.display().to_string();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"), "{at}");
    for attr in ["src", "href", "xlink:href", "action"] {
        for value in attribute_values(html, attr) {
            let v = value.trim().to_ascii_lowercase();
            assert!(
                !v.starts_with("http:") && !v.starts_with("https:") && !v.starts_with("//"),
                "{at}: {attr}={value}"
            );
        }
    }
    for external in ["<script", "<link", "<iframe", "<img", "@import", "url("] {
        assert!(!html.contains(external), "{at}: contains {external}");
    }
    assert!(html.contains(&format!(">{verdict}<")), "{at}: no verdict");
    assert!(!html.contains("NaN") && !html.contains("inf"), "{at}");
    at
}
