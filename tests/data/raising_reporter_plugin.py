"""A reporter that writes half a file and then raises: the other tables must still be written,
and nothing of this reporter's."""

from rnnbench import hookimpl


def half_then_raise(table, out_dir):
    (out_dir / "half.md").write_text("# half a table\n")
    raise RuntimeError("reporter broke")


@hookimpl
def rnnbench_register_reporters(register):
    register("half", half_then_raise, "writes half a table, then raises")
