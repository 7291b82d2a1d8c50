//! Renders the report model with minijinja templates.
//!
//! The templates (`templates/report.html.j2`, `templates/report.md.j2`) are
//! built into the binary; `--templates DIR` replaces any of them by name.
//! Undefined variables are errors, so a template typo fails the run instead of
//! silently printing nothing.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::report::Report;

/// The HTML report template's name.
pub const HTML_TEMPLATE: &str = "report.html.j2";
/// The Markdown report template's name.
pub const MD_TEMPLATE: &str = "report.md.j2";

const BUILTIN: &[(&str, &str)] = &[
    (
        HTML_TEMPLATE,
        include_str!("../../templates/report.html.j2"),
    ),
    (MD_TEMPLATE, include_str!("../../templates/report.md.j2")),
];

/// Why rendering failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RenderError {
    /// A template file could not be read.
    #[error("cannot read template `{path}`: {source}")]
    #[diagnostic(code(syncproof::render::io))]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A rendered report could not be written.
    #[error("cannot write the report rendered with `{name}`: {source}")]
    #[diagnostic(code(syncproof::render::write))]
    Write {
        /// The template.
        name: String,
        /// The error.
        source: io::Error,
    },
    /// A template failed to parse or render.
    #[error("template `{name}` failed: {message}")]
    #[diagnostic(code(syncproof::render::template))]
    Template {
        /// The template.
        name: String,
        /// minijinja's message, with line.
        message: String,
    },
}

/// The report templates.
#[derive(Clone, Debug)]
pub struct Templates {
    sources: BTreeMap<String, String>,
}

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Self {
        Templates {
            sources: BUILTIN
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect(),
        }
    }

    /// The built-in templates with any of the same names in `dir` replacing
    /// them.
    pub fn with_overlay(dir: &Path) -> Result<Self, RenderError> {
        let mut t = Templates::builtin();
        for (name, _) in BUILTIN {
            let path = dir.join(name);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                t.sources.insert((*name).to_owned(), text);
            }
        }
        Ok(t)
    }

    /// Renders the report with one template ([`HTML_TEMPLATE`] or
    /// [`MD_TEMPLATE`]), ending in a newline. Independent of the other
    /// template, so both can be rendered at once from one context.
    pub fn render_one(&self, name: &str, context: &ReportContext) -> Result<String, RenderError> {
        let mut out = Vec::new();
        self.render_to(name, context, &mut out)?;
        String::from_utf8(out).map_err(|e| RenderError::Template {
            name: name.to_owned(),
            message: e.to_string(),
        })
    }

    /// [`Self::render_one`], written to `out` as it is rendered (through a
    /// buffer) instead of into a string: a W10 report is ~100 MB of text.
    pub fn render_to(
        &self,
        name: &str,
        context: &ReportContext,
        out: &mut dyn Write,
    ) -> Result<(), RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // HTML-escape everything in the HTML report; Markdown is plain text.
        env.set_auto_escape_callback(|name| {
            if name.contains(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        // Markdown table cells: no raw pipes or line breaks.
        env.add_filter("mdcell", |s: String| -> String {
            s.replace('|', "\\|").replace(['\n', '\r'], " ")
        });
        for (name, src) in &self.sources {
            env.add_template_owned(name.clone(), src.clone())
                .map_err(|e| template_error(name, &e))?;
        }
        let t = env
            .get_template(name)
            .map_err(|e| template_error(name, &e))?;
        let mut sink = io::BufWriter::with_capacity(
            1 << 16,
            Tracked {
                inner: out,
                last: None,
                error: None,
            },
        );
        let rendered = t.render_captured_to(&context.0, &mut sink).map(drop);
        let ended = rendered.is_ok().then(|| sink.flush());
        let sink = sink.into_parts().0;
        let write_error = |source| RenderError::Write {
            name: name.to_owned(),
            source,
        };
        // A failed write surfaces in minijinja as its own error; the I/O
        // error behind it is the one reported.
        if let Some(source) = sink.error {
            return Err(write_error(source));
        }
        rendered.map_err(|e| template_error(name, &e))?;
        if let Some(Err(source)) = ended {
            return Err(write_error(source));
        }
        if sink.last != Some(b'\n') {
            sink.inner.write_all(b"\n").map_err(write_error)?;
        }
        Ok(())
    }
}

/// The report as the templates see it: converted to template values once,
/// and shared by every template rendered from it, on any thread. The
/// conversion is a copy of the whole report (~17 MB on W1, by heaptrack),
/// which `attest` would otherwise make once per template, both alive at
/// once while they render side by side.
#[derive(Clone, Debug)]
pub struct ReportContext(Value);

impl ReportContext {
    /// The context of `report`: `report` (the model) and `chart` (its
    /// latency chart as SVG, not escaped).
    pub fn new(report: &Report) -> Self {
        ReportContext(minijinja::context! {
            report => Value::from_serialize(report),
            chart => Value::from_safe_string(report.latency_chart_svg.clone()),
        })
    }
}

/// Passes writes on, keeping the last byte written and the first error.
struct Tracked<'a> {
    inner: &'a mut dyn Write,
    last: Option<u8>,
    error: Option<io::Error>,
}

impl Write for Tracked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                if let Some(b) = n.checked_sub(1).and_then(|i| buf.get(i)) {
                    self.last = Some(*b);
                }
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn template_error(name: &str, e: &minijinja::Error) -> RenderError {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message = format!("line {line}: {message}");
    }
    RenderError::Template {
        name: name.to_owned(),
        message,
    }
}
