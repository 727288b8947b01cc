//! Host options given as strings: `-v` binds and `--user`.

use super::error::{ContainerError, Result};
use super::spec::{BindMount, UserIds};

fn invalid(msg: impl Into<String>) -> ContainerError {
    ContainerError::Invalid(msg.into())
}

/// `-v /host:/ctr[:ro]` (bind mounts only; named volumes are not supported).
pub(crate) fn parse_binds(binds: &[String]) -> Result<Vec<BindMount>> {
    binds
        .iter()
        .map(|b| {
            let parts: Vec<&str> = b.split(':').collect();
            let (src, dst, ro) = match parts.as_slice() {
                [s, d] => (*s, *d, false),
                [s, d, mode] => (*s, *d, mode.split(',').any(|m| m == "ro")),
                _ => return Err(invalid(format!("invalid volume specification: '{b}'"))),
            };
            if !src.starts_with('/') {
                return Err(invalid(format!(
                    "invalid volume specification: '{b}': berthd supports bind mounts of absolute host paths only"
                )));
            }
            Ok(BindMount {
                source: src.into(),
                destination: dst.into(),
                read_only: ro,
            })
        })
        .collect()
}

/// `Config.User`: numeric `uid[:gid]`, or `root`.
pub(crate) fn parse_user(user: &str) -> Result<UserIds> {
    if user.is_empty() {
        return Ok(UserIds::default());
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let num = |s: &str| -> Result<u32> {
        match s {
            "root" => Ok(0),
            s => s.parse().map_err(|_| {
                invalid(format!(
                    "unable to find user {s}: berthd resolves numeric ids and root only"
                ))
            }),
        }
    };
    let uid = num(u)?;
    let gid = match g {
        Some(g) => num(g)?,
        None if uid == 0 => 0,
        None => uid,
    };
    Ok(UserIds {
        uid,
        gid,
        additional_gids: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_users() {
        let b = parse_binds(&["/a:/b:ro".to_string(), "/c:/d".to_string()]).unwrap();
        assert!(b[0].read_only && !b[1].read_only);
        assert!(parse_binds(&["vol:/d".to_string()]).is_err());
        assert_eq!(parse_user("1000").unwrap().gid, 1000);
        assert_eq!(parse_user("root").unwrap().uid, 0);
        assert_eq!(parse_user("1:2").unwrap().gid, 2);
        assert!(parse_user("nobody").is_err());
    }
}
