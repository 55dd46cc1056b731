//! The `key=value` options of a schedule string or TOML file, taken one by one so that
//! whatever is left over is an unknown option, and every error names the option at fault.

/// The key=value pairs of one schedule, consumed option by option so that leftovers are unknown.
pub(crate) struct Options<'a> {
    name: &'a str,
    pairs: Vec<(String, String)>,
    /// Every key asked for, for the message about a key nobody asked for.
    asked: Vec<String>,
}

impl<'a> Options<'a> {
    pub(crate) fn new(name: &'a str, pairs: &[(String, String)]) -> Self {
        Options {
            name,
            pairs: pairs.to_vec(),
            asked: Vec::new(),
        }
    }

    /// The options not taken yet.
    pub(crate) fn remaining(&self) -> &[(String, String)] {
        &self.pairs
    }

    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        if !self.asked.iter().any(|k| k == key) {
            self.asked.push(key.to_owned());
        }
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(i).1)
    }

    pub(crate) fn parse_usize(v: &str) -> Result<usize, String> {
        v.parse()
            .map_err(|_| format!("expected a non-negative integer, found `{v}`"))
    }

    pub(crate) fn parse_f64(v: &str) -> Result<f64, String> {
        v.parse()
            .map_err(|_| format!("expected a number, found `{v}`"))
    }

    pub(crate) fn usize(&mut self, key: &str) -> Result<Option<usize>, String> {
        self.take(key)
            .map(|v| Self::parse_usize(&v).map_err(|m| format!("option `{key}`: {m}")))
            .transpose()
    }

    pub(crate) fn f64(&mut self, key: &str) -> Result<Option<f64>, String> {
        self.take(key)
            .map(|v| Self::parse_f64(&v).map_err(|m| format!("option `{key}`: {m}")))
            .transpose()
    }

    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        self.take(key)
            .map(|v| match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!(
                    "option `{key}`: expected true or false, found `{v}`"
                )),
            })
            .transpose()
    }

    /// A value that may be `none` (upstream's `None`).
    pub(crate) fn optional<T>(
        &mut self,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) if v == "none" => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .map_err(|m| format!("option `{key}`: {m} or `none`")),
        }
    }

    pub(crate) fn choice<T: Copy>(
        &mut self,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, String> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match choices.iter().find(|(n, _)| *n == v) {
            Some((_, c)) => Ok(Some(*c)),
            None => {
                let names: Vec<_> = choices.iter().map(|(n, _)| *n).collect();
                Err(format!(
                    "option `{key}`: unknown value `{v}`; expected one of {}",
                    names.join(", ")
                ))
            }
        }
    }

    /// Fails on the first option nobody asked for.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(format!(
                "unknown option `{k}` for schedule `{}` (its options: {})",
                self.name,
                self.asked.join(", ")
            )),
        }
    }
}
