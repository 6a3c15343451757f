"""tools/program_hash.py: equal programs hash alike, whatever the checkout's path; changed ones do not."""
from _tools import load_tool, run_tool


def test_debug_information_is_left_out_and_the_program_kept():
    mod = load_tool("program_hash")
    a = ('HloModule m\n  1 "/a/x.py"\n  %d = f32[2] add(%a, %b), metadata={op_name="x" source_file="/a/x.py"}\n'
         'FileNames\nStackFrames\n  2 {file_location_id=1}\n  %e = f32[2] multiply(%d, %d), stack_frame_id=3\n')
    b = a.replace("/a/x.py", "/other/checkout/x.py").replace("stack_frame_id=3", "stack_frame_id=9")
    assert mod.stripped(a) == mod.stripped(b)
    assert mod.stripped(a) != mod.stripped(a.replace("multiply", "add"))   # another program
    assert "add(%a, %b)" in mod.stripped(a) and "multiply(%d, %d)" in mod.stripped(a)


def test_the_tool_prints_one_stable_hash_per_program():
    outs = [run_tool("program_hash.py", "--small", timeout=300) for _ in range(2)]
    assert all(o.returncode == 0 for o in outs), outs[0].stderr[-2000:]
    lines = [o.stdout.strip().splitlines()[1:] for o in outs]
    assert len(lines[0]) == 5 and lines[0] == lines[1]
    assert len({line.split()[-3] for line in lines[0]}) == 5   # five different programs
