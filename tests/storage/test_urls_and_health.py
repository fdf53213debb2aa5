"""Storage URLs say what is accepted; a SQLite file is created only by a write; a database
file that is deleted, replaced or damaged while in use is noticed; study names are printable."""

from __future__ import annotations

import os
import sqlite3

import pytest

from optml.errors import StorageError, StudyNotFoundError
from optml.samplers._base import Metric
from optml.storage import InMemoryStorage, open_storage
from optml.storage._sql import SQLStorage


def new_study(storage, name="s"):
    return storage.create_study(name, metrics=[Metric("loss")], space={}, sampler={}, seed=0)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite://bad.db", "three slashes, as in sqlite:///bad.db"),
        ("sqlite:///", "names no file"),
        ("postgresql+asyncpg://u:secret@localhost/db", "synchronous driver"),
        ("postgresql+nosuchdriver://u@localhost/db", "'nosuchdriver'"),
        ("mysql+pymysql://u:secret@localhost/db", "not understood"),
        ("sqlite+foo:///x.db", "'foo' is not one OptML can use"),
    ],
)
def test_bad_urls_name_the_url_and_what_is_accepted(tmp_path, monkeypatch, url, words) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError) as err:
        open_storage(url)
    message = str(err.value)
    assert words in message and "secret" not in message
    assert "sqlite:///PATH.db" in message
    assert not list(tmp_path.iterdir()), "a refused URL must create nothing"


def test_a_driver_that_is_not_installed_is_a_storage_error() -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import pg8000  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pg8000 is installed here")
    with pytest.raises(StorageError, match="driver is not installed"):
        open_storage("postgresql+pg8000://u@localhost/db")


def test_directory_as_database_is_refused(tmp_path) -> None:
    with pytest.raises(StorageError, match="is a directory"):
        open_storage(f"sqlite:///{tmp_path}")


def test_reads_of_a_missing_file_do_not_create_it(tmp_path) -> None:
    path = tmp_path / "none.db"
    storage = open_storage(f"sqlite:///{path}")
    assert storage.list_studies() == []
    with pytest.raises(StudyNotFoundError, match=str(path)):
        storage.load_study("x")
    with pytest.raises(StudyNotFoundError):
        storage.get_trials(1)
    assert not path.exists()
    new_study(storage)  # the first write creates it
    assert path.exists() and storage.load_study("s").name == "s"
    storage.close()


def test_a_file_created_by_another_process_after_opening_is_read(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}"
    reader = open_storage(url)
    writer = open_storage(url)
    new_study(writer)
    assert reader.load_study("s").name == "s"
    reader.close()
    writer.close()


def test_a_file_that_is_not_a_database_is_named_and_left_alone(tmp_path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"plain text, not SQLite\n" * 100)
    with pytest.raises(StorageError) as err:
        open_storage(f"sqlite:///{path}")
    assert str(path) in str(err.value) and "not a SQLite database" in str(err.value)
    assert path.read_bytes() == b"plain text, not SQLite\n" * 100


def test_deleted_file_is_noticed_on_the_next_write(tmp_path) -> None:
    path = tmp_path / "gone.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = new_study(storage)
    storage.create_trial(study.id, {})
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (path.name + suffix)).unlink(missing_ok=True)
    with pytest.raises(StorageError, match=f"{path} was deleted"):
        storage.create_trial(study.id, {})
    storage.close()


def test_replaced_file_is_noticed_on_the_next_write(tmp_path) -> None:
    path = tmp_path / "db.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = new_study(storage)
    other = SQLStorage(f"sqlite:///{tmp_path / 'other.db'}")
    new_study(other)
    other.close()
    os.replace(tmp_path / "other.db", path)
    with pytest.raises(StorageError, match=f"{path} was replaced"):
        storage.create_trial(study.id, {})
    storage.close()


def test_overwritten_file_is_noticed_on_the_next_write(tmp_path) -> None:
    path = tmp_path / "db.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = new_study(storage)
    with sqlite3.connect(path) as con:  # make sure the main file holds pages
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:
        f.write(b"\0" * 100)
    with pytest.raises(StorageError, match=f"{path}"):
        storage.create_trial(study.id, {})
    storage.close()


@pytest.mark.parametrize("storage_kind", ["memory", "sqlite"])
@pytest.mark.parametrize(
    "name", ["a\nb", "tab\t", "\x1b[2J", "x\u2028y", "", "n" * 256, "team/study", ".", ".."]
)
def test_every_storage_refuses_unprintable_or_bad_length_names(tmp_path, storage_kind, name):
    storage = (
        InMemoryStorage()
        if storage_kind == "memory"
        else open_storage(f"sqlite:///{tmp_path / 'n.db'}")
    )
    with pytest.raises(StorageError, match="study name"):
        new_study(storage, name)
    assert storage.list_studies() == []
    storage.close()


@pytest.mark.parametrize("storage_kind", ["memory", "sqlite"])
def test_printable_names_with_brackets_and_unicode_are_kept(tmp_path, storage_kind) -> None:
    storage = (
        InMemoryStorage()
        if storage_kind == "memory"
        else open_storage(f"sqlite:///{tmp_path / 'n.db'}")
    )
    for name in ("a[bold]", "étude 1", "n" * 255, "q?x#y %z", "...", "v1.2"):
        new_study(storage, name)
        assert storage.load_study(name).name == name
    storage.close()
