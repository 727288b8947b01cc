//! `docker import --change`: Dockerfile instructions that set the imported
//! image's run config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
//! STOPSIGNAL, USER, VOLUME, WORKDIR), applied in order as dockerd's
//! `BuildFromConfig` does.

use std::collections::BTreeMap;

use super::types::{EmptyObject, RunConfig};
use super::ImageError;

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::InvalidChange(msg.into())
}

/// Builds the run config the instructions describe, starting from an empty
/// one; `None` when there are no instructions.
pub fn run_config_from_changes<S: AsRef<str>>(
    changes: &[S],
) -> Result<Option<RunConfig>, ImageError> {
    let mut config = RunConfig::default();
    let mut cmd_set = false;
    let mut any = false;
    for change in changes {
        let change = change.as_ref().trim();
        if change.is_empty() {
            continue;
        }
        any = true;
        let (instruction, rest) = change
            .split_once(char::is_whitespace)
            .map_or((change, ""), |(i, r)| (i, r.trim()));
        match instruction.to_ascii_uppercase().as_str() {
            "CMD" => {
                config.cmd = Some(command(rest));
                cmd_set = true;
            }
            "ENTRYPOINT" => {
                config.entrypoint = Some(command(rest));
                // As in a Dockerfile: a new entrypoint drops an inherited CMD.
                if !cmd_set {
                    config.cmd = None;
                }
            }
            "ENV" => {
                let env = config.env.get_or_insert_with(Vec::new);
                for (key, value) in pairs(instruction, rest, true)? {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
                    env.push(format!("{key}={value}"));
                }
            }
            "LABEL" => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for (key, value) in pairs(instruction, rest, false)? {
                    labels.insert(key, value);
                }
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for port in words(rest)? {
                    ports.insert(exposed_port(&port)?, EmptyObject {});
                }
            }
            "VOLUME" => {
                let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
                let paths = json_list(rest).map_or_else(|| words(rest), Ok)?;
                for path in paths {
                    volumes.insert(path, EmptyObject {});
                }
            }
            "ONBUILD" => config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string()),
            "STOPSIGNAL" => config.stop_signal = Some(single(instruction, rest)?),
            "USER" => config.user = single(instruction, rest)?,
            "WORKDIR" => {
                let dir = single(instruction, rest)?;
                config.working_dir = if dir.starts_with('/') || config.working_dir.is_empty() {
                    dir
                } else {
                    format!("{}/{dir}", config.working_dir.trim_end_matches('/'))
                };
            }
            _ => {
                return Err(invalid(format!(
                    "{instruction} is not a valid change command"
                )))
            }
        }
    }
    Ok(any.then_some(config))
}

/// A JSON array of strings (exec form), or `None`.
fn json_list(rest: &str) -> Option<Vec<String>> {
    rest.starts_with('[')
        .then(|| serde_json::from_str(rest).ok())
        .flatten()
}

/// CMD and ENTRYPOINT: exec form as given, shell form through `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    json_list(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

fn single(instruction: &str, rest: &str) -> Result<String, ImageError> {
    match words(rest)?.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(invalid(format!(
            "{instruction} requires exactly one argument"
        ))),
    }
}

/// `KEY=VALUE ...`, or for ENV the legacy `KEY VALUE` form.
fn pairs(
    instruction: &str,
    rest: &str,
    legacy_form: bool,
) -> Result<Vec<(String, String)>, ImageError> {
    let parts = words(rest)?;
    if parts.is_empty() {
        return Err(invalid(format!(
            "{instruction} requires at least one argument"
        )));
    }
    if legacy_form && !parts[0].contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid(format!("{instruction} {rest}: missing a value")))?;
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    parts
        .into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(invalid(format!("{instruction}: {p:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002/tcp` -> docker's `port/proto` key.
fn exposed_port(port: &str) -> Result<String, ImageError> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let valid_number = |n: &str| n.parse::<u16>().is_ok_and(|n| n > 0);
    let numbers_ok = match number.split_once('-') {
        Some((lo, hi)) => valid_number(lo) && valid_number(hi),
        None => valid_number(number),
    };
    if !numbers_ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid port {port:?} for EXPOSE")));
    }
    Ok(format!("{number}/{proto}"))
}

/// Splits on whitespace, honouring single and double quotes and backslash
/// escapes, as Dockerfile arguments are read.
fn words(text: &str) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(invalid(format!("unmatched quote in {text:?}")));
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builds_a_run_config() {
        let c = run_config_from_changes(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENV PATH=/bin:/usr/bin GREETING=\"hello world\"",
            "ENV LEGACY some value",
            "ENV PATH=/usr/local/bin",
            "EXPOSE 80 53/udp",
            r#"LABEL a=b "c d"=e"#,
            "WORKDIR /srv",
            "WORKDIR app",
            "USER nobody",
            "STOPSIGNAL SIGINT",
            r#"VOLUME ["/data"]"#,
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.cmd, Some(strings(&["/bin/sh", "-c", "echo hi"])));
        assert_eq!(
            c.env,
            Some(strings(&[
                "GREETING=hello world",
                "LEGACY=some value",
                "PATH=/usr/local/bin"
            ]))
        );
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c d"], "e");
        assert_eq!(c.working_dir, "/srv/app");
        assert_eq!(c.user, "nobody");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert!(c.volumes.unwrap().contains_key("/data"));
    }

    #[test]
    fn shell_form_and_entrypoint() {
        let c = run_config_from_changes(&["CMD httpd -f", "ENTRYPOINT [\"/bin/sh\"]"])
            .unwrap()
            .unwrap();
        assert_eq!(c.cmd, Some(strings(&["/bin/sh", "-c", "httpd -f"])));
        assert_eq!(c.entrypoint, Some(strings(&["/bin/sh"])));
        let c = run_config_from_changes(&["ENTRYPOINT top"])
            .unwrap()
            .unwrap();
        assert_eq!(c.entrypoint, Some(strings(&["/bin/sh", "-c", "top"])));
        assert_eq!(c.cmd, None);
    }

    #[test]
    fn refuses_what_dockerd_refuses() {
        assert!(run_config_from_changes::<&str>(&[]).unwrap().is_none());
        assert!(run_config_from_changes(&["", "  "]).unwrap().is_none());
        for bad in [
            "RUN echo",
            "FROM busybox",
            "EXPOSE 0",
            "EXPOSE 80/xyz",
            "LABEL novalue",
            "USER",
            "ENV \"unterminated",
        ] {
            assert!(
                matches!(
                    run_config_from_changes(&[bad]),
                    Err(ImageError::InvalidChange(_))
                ),
                "{bad}"
            );
        }
        let err = run_config_from_changes(&["RUN echo"]).unwrap_err();
        assert_eq!(err.to_string(), "RUN is not a valid change command");
    }
}
