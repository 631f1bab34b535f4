"""The search's Optuna study, kept where Optuna's own tools see it: a journal file beside the MLflow
database (or an RDB), the study named after the search, so `optuna-dashboard`, Optuna's CLI and
`optuna.load_study` show it while it runs and after, and a resumed search goes on with the same study."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from tune_codec.errors import UsageError
from tune_codec.search.space import Space
from tune_codec.tracking import one_line, sqlite_file

JOURNAL = "optuna.journal"  # a file of appended records: parallel writers take turns on a lock
STORAGE_HELP = (
    "where Optuna keeps the search's study: a journal file, or a database URL such as sqlite:///optuna.db "
    f"(default: $OPTUNA_STORAGE, else {JOURNAL} beside the MLflow database, else in --storage-path)"
)


def study_location(given: str | None, tracking_uri: str, storage_path: Path) -> str:
    """--study-storage, else $OPTUNA_STORAGE (as Optuna's CLI reads it), else optuna.journal beside a local
    MLflow database, else (a tracking server) in the Ray storage path. A journal as an absolute path."""
    given = given or os.environ.get("OPTUNA_STORAGE")
    if given:
        return given if "://" in given else str(Path(given).resolve())
    db = sqlite_file(tracking_uri)
    return str((db.parent if db else storage_path.resolve()) / JOURNAL)


def is_journal(location: str) -> bool:
    return "://" not in location


def open_storage(location: str) -> BaseStorage:
    """Optuna's storage at location; a UsageError naming it when Optuna cannot open it."""
    try:
        if is_journal(location):
            Path(location).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(location))
        return RDBStorage(location)
    except (ImportError, ValueError, OSError, sqlalchemy.exc.SQLAlchemyError) as e:
        raise UsageError(
            f"study storage {location!r} (--study-storage or $OPTUNA_STORAGE): Optuna cannot open it "
            f"({one_line(e)}); give a journal file path or a database URL such as sqlite:///optuna.db"
        ) from None


def optuna_flags(location: str) -> str:
    """The storage as Optuna's CLI takes it."""
    return f"--storage {location}" + (" --storage-class JournalFileBackend" if is_journal(location) else "")


def check_study(location: str, name: str, resume: bool) -> None:
    """Before anything is written: a new search's study must not exist yet (one of that name belongs to an
    earlier search, and TPE would learn from its trials), a resumed search's must still be there."""
    names = optuna.study.get_all_study_names(open_storage(location))
    if resume and name not in names:
        raise UsageError(
            f"--resume: the Optuna study {name!r} is no longer in {location}; the search cannot go on with it"
        )
    if not resume and name in names:
        raise UsageError(
            f"the Optuna study {name!r} already exists in {location}, from an earlier search of that name; "
            "pass --name for a new search, or delete the study: "
            f"optuna delete-study {optuna_flags(location)} --study-name {name}"
        )


def create_study(location: str, name: str, space: Space, attrs: dict[str, str]) -> BaseStorage:
    """A new study named `name` for the space's objectives (OptunaSearch then loads it), with attrs that
    lead from it to the search's MLflow run and Ray folder; the storage it is in."""
    storage = open_storage(location)
    directions = ["maximize", "minimize"] if space.objectives else ["maximize"]  # (metric, kbps) or metric
    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return storage


def dashboard_command(location: str) -> str:
    return f"optuna-dashboard {location}"
