"""S3 credentials named by the config file: an AWS shared-credentials file and a profile.

With ``[s3] credentials_file`` the keys are read here and handed to the boto3
session explicitly, so the process environment is never changed and no other
source (AWS_* variables, ``~/.aws``) is consulted for them. Without it,
boto3's usual chain applies. Every problem names the file and the profile.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass

from drsync.errors import ConfigError

__all__ = ["StaticCredentials", "read_credentials_file"]


@dataclass(frozen=True)
class StaticCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"StaticCredentials(access_key_id={self.access_key_id!r}, ...)"


def read_credentials_file(path: str, profile: str | None) -> StaticCredentials:
    """The keys of ``profile`` (default: ``default``) in the shared-credentials file."""
    section = profile or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise ConfigError(f"S3 credentials file {path} does not exist") from None
    except OSError as err:
        raise ConfigError(f"cannot read S3 credentials file {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"S3 credentials file {path} is not UTF-8 text") from None
    except configparser.Error as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"S3 credentials file {path} is malformed: {first}") from None
    if not parser.has_section(section):
        raise ConfigError(f"S3 credentials file {path} has no profile [{section}]")
    values = parser[section]
    missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not values.get(k)]
    if missing:
        raise ConfigError(f"S3 credentials file {path}, profile [{section}]: "
                          f"no {' or '.join(missing)}")
    return StaticCredentials(values["aws_access_key_id"].strip(),
                             values["aws_secret_access_key"].strip(),
                             (values.get("aws_session_token") or "").strip() or None)
