"""The new-run form's Slurm job (partition, time limit, CPUs, memory, GPUs, sbatch options, requeue): in the hardware
group on a server whose executor is Slurm, filled with the server's settings and hidden for a run on the server
itself, a bad value named under its field, what is sent stored with the run; absent from a server without Slurm."""

from __future__ import annotations

import sqlite3

import pytest

from tests.test_slurm import cancel_jobs, slurm_missing, slurm_server

SLURM_FIELDS = ["partition", "time", "cpus", "mem", "gpus", "options", "requeue"]


def test_a_server_without_slurm_shows_no_executor_nor_job(server, page):
    page.goto(server.url + "/")
    page.wait_for_selector('fieldset[data-group="hardware"] [name="device"]')
    assert page.locator('[name="executor"]').count() == 0
    assert page.locator('[name^="slurm."]').count() == 0


@pytest.mark.skipif(bool(why := slurm_missing()), reason=why or "")
def test_a_slurm_server_shows_the_job_with_its_settings_and_names_a_bad_time_limit(tmp_path, page):
    runs = tmp_path / "runs"
    runs.mkdir()
    server = slurm_server(runs, GANBOARD_SLURM_TIME="4:00:00", GANBOARD_SLURM_OPTIONS='["--qos=normal"]')
    try:
        page.goto(server.url + "/")
        hardware = page.locator('fieldset[data-group="hardware"]')
        hardware.locator('[name="slurm.time"]').wait_for()
        assert [hardware.locator(f'[name="slurm.{key}"]').is_visible() for key in SLURM_FIELDS] == [True] * 7
        assert page.input_value('[name="slurm.time"]') == "4:00:00" and page.input_value('[name="slurm.cpus"]') == "1"
        assert page.input_value('[name="slurm.options"]') == "--qos=normal"

        page.select_option('[name="executor"]', "local")  # this server: no job to describe
        assert not any(hardware.locator(f'[name="slurm.{key}"]').is_visible() for key in SLURM_FIELDS)
        page.select_option('[name="executor"]', "slurm")

        page.fill('[name="slurm.time"]', "2 hours")
        page.click("#start-button")
        error = page.locator('.field-error[data-field="slurm.time"]')
        error.wait_for()
        assert "'2 hours' is not a Slurm time limit" in error.text_content()
        assert page.get_attribute('[name="slurm.time"]', "aria-invalid") == "true"
        assert server.client.get("/api/runs").json() == []

        page.fill('[name="slurm.time"]', "0:05:00")
        page.fill('[name="slurm.mem"]', "300M")
        page.fill('[name="slurm.requeue"]', "2")
        page.fill('[name="slurm.options"]', " --qos=normal  --hold ")  # held: it stays pending in Slurm
        page.click("#start-button")
        page.wait_for_url("**/runs/*")
        [run] = server.client.get("/api/runs").json()
        assert run["executor"] == "slurm" and run["slurm"] == {"partition": None, "time": "0:05:00", "cpus": 1, "mem": "300M",
                                                               "gpus": 0, "options": ["--qos=normal", "--hold"], "requeue": 2}  # fmt: skip

        # The run page says what Slurm says of a queued run, and why a requeued one waits.
        page.wait_for_function("document.getElementById('run-times').textContent.includes('pending: JobHeldUser')")
        why = "requeued after Slurm's time limit, 1 of 2: Slurm job 1 reached its time limit (state TIMEOUT)"
        with sqlite3.connect(runs / "ganboard.db") as db:
            db.execute("UPDATE runs SET error = ? WHERE id = ?", [why, run["id"]])
        page.reload()
        page.locator("#error").wait_for()
        assert page.text_content("#error") == why
    finally:
        server.stop()
        cancel_jobs(runs)
