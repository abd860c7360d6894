"""A linter for the expanded HDAs in hda/otls and the Houdini package file.

It parses what Houdini parses (Sections.list, INDEX__SECTION, DialogScript, TypePropertiesOptions,
the MIME Contents of subnet assets) and checks that the pieces agree with each other and with
mlvfx_houdini: namespaced, versioned type names and their encoded folder names, every listed
section present (and nothing unlisted), help for every parameter, one-line PythonCook and
callbacks that name functions which exist, and that every parameter the Python reads exists.
"""

from __future__ import annotations

import ast
import email
import importlib
import inspect
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HDA = REPO / "hda"
OTLS = HDA / "otls"
LIBS = HDA / "python3.11libs"
sys.path.insert(0, str(LIBS))

TYPE_RE = re.compile(r"^mlvfx::(Sop|Top|Cop2)/([a-z][a-z0-9_]*)::(\d+\.\d+)$")
REQUIRED = {"DialogScript", "TypePropertiesOptions", "Help", "CreateScript", "Tools.shelf"}
EXPECTED_TYPES = {
    "mlvfx::Sop/smoke_surrogate::1.0",
    "mlvfx::Top/material_from_photo::1.0",
    "mlvfx::Top/texture_synth::1.0",
    "mlvfx::Cop2/material_maps::1.0",
}


def encode_section_name(name: str) -> str:
    """Houdini's file name for a section: '_' -> '__', ':' -> '_8', '/' -> '_1'."""
    return "".join({"_": "__", ":": "_8", "/": "_1"}.get(c, c) for c in name)


# --------------------------------------------------------------------------------------------
# parsers


def parse_sections_list(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines and lines[0] == '""', f'{path}: must start with the empty-name line ""'
    entries = []
    for line in lines[1:]:
        if not line:
            continue
        file_name, sep, section = line.partition("\t")
        assert sep, f"{path}: line {line!r} is not FILE<TAB>SECTION"
        entries.append((file_name, section))
    return entries


def parse_index(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, sep, value = line.partition(":")
            assert sep, f"{path}: bad line {line!r}"
            out[key.strip()] = value.strip()
    return out


_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\{|\}|\[|\])|([^\s{}\[\]"]+)|(\n)')


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, value): kind is 'str', 'punct', 'word' or 'nl'. Comments (#...) are dropped."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    tokens = []
    for m in _TOKEN.finditer(text):
        if m.group(1) is not None:
            tokens.append(("str", bytes(m.group(1), "utf-8").decode("unicode_escape")))
        elif m.group(2):
            tokens.append(("punct", m.group(2)))
        elif m.group(3):
            tokens.append(("word", m.group(3)))
        else:
            tokens.append(("nl", "\n"))
    return tokens


BLOCK_KEYS = {"parm", "group", "groupsimple", "groupcollapsible", "multiparm", "import"}


@dataclass
class Block:
    kind: str
    fields: dict[str, list[object]] = field(default_factory=dict)
    children: list[Block] = field(default_factory=list)

    def value(self, key: str) -> object:
        values = self.fields.get(key, [])
        return values[0] if values else None

    def tags(self) -> dict[str, str]:
        out = {}
        for raw in self.fields.get("parmtag", []):
            items = [v for v in raw if isinstance(v, str)]  # type: ignore[attr-defined]
            out[items[0]] = items[1]
        return out

    def parms(self) -> list[Block]:
        out = []
        for child in self.children:
            if child.kind == "parm":
                out.append(child)
            out.extend(child.parms())
        return out


def _raw_block(tokens: list[tuple[str, str]], i: int) -> tuple[list[object], int]:
    assert tokens[i] == ("punct", "{") or tokens[i] == ("punct", "[")
    close = "}" if tokens[i][1] == "{" else "]"
    out: list[object] = []
    i += 1
    while tokens[i] != ("punct", close):
        if tokens[i][0] == "nl":
            i += 1
        elif tokens[i] in (("punct", "{"), ("punct", "[")):
            inner, i = _raw_block(tokens, i)
            out.append(inner)
        else:
            out.append(tokens[i][1])
            i += 1
    return out, i + 1


def _parse_block(tokens: list[tuple[str, str]], i: int, kind: str) -> tuple[Block, int]:
    assert tokens[i] == ("punct", "{"), f"expected {{ after {kind}, got {tokens[i]}"
    block = Block(kind)
    i += 1
    while tokens[i] != ("punct", "}"):
        tk, tv = tokens[i]
        if tk == "nl":
            i += 1
            continue
        assert tk == "word", f"unexpected {tokens[i]} in {kind}"
        i += 1
        if tv in BLOCK_KEYS and tokens[i] == ("punct", "{"):
            child, i = _parse_block(tokens, i, tv)
            block.children.append(child)
        elif tokens[i] == ("punct", "{"):
            raw, i = _raw_block(tokens, i)
            block.fields.setdefault(tv, []).append(raw)
        else:
            values = []
            while tokens[i][0] != "nl" and tokens[i] != ("punct", "}"):
                values.append(tokens[i][1])
                i += 1
            block.fields.setdefault(tv, []).append(values[0] if len(values) == 1 else values)
    return block, i + 1


def parse_dialog_script(text: str) -> Block:
    tokens = [t for t in tokenize(text)]
    i = 0
    while tokens[i][0] == "nl":
        i += 1
    block, i = _parse_block(tokens, i, "dialog")
    assert all(t[0] == "nl" for t in tokens[i:]), "trailing text after the DialogScript block"
    return block


def parse_type_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip():
            m = re.match(r"^(\w+) := (.*);$", line.strip())
            assert m, f"bad TypePropertiesOptions line {line!r}"
            out[m.group(1)] = m.group(2)
    return out


def mime_parts(text: str) -> dict[str, str]:
    msg = email.message_from_string(text)
    assert msg.is_multipart()
    out = {}
    for part in msg.get_payload():
        name = part.get_param("filename", header="content-disposition")
        out[str(name)] = part.get_payload()
    return out


def one_line_calls(code: str, where: str) -> list[tuple[str, str]]:
    """Check ``code`` is one line of Python that only imports from mlvfx_houdini and calls it.

    Returns the (module, function) pairs it imports or calls.
    """
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) == 1, f"{where}: must be a one-line call into mlvfx_houdini, got {len(lines)} lines"
    tree = ast.parse(lines[0])
    used: list[tuple[str, str]] = []
    aliases: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                assert alias.name.startswith("mlvfx_houdini."), f"{where}: imports {alias.name}"
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(stmt, ast.ImportFrom):
            assert (stmt.module or "").startswith("mlvfx_houdini."), f"{where}: imports from {stmt.module}"
            used.extend((stmt.module or "", a.name) for a in stmt.names)
        elif isinstance(stmt, ast.Return | ast.Expr):
            call = stmt.value
            assert isinstance(call, ast.Call), f"{where}: statement is not a call"
            target = ast.unparse(call.func)
            module, _, func = target.rpartition(".")
            assert module in aliases.values() or module in aliases, (
                f"{where}: calls {target}, not mlvfx_houdini"
            )
            used.append((aliases.get(module, module), func))
        else:
            raise AssertionError(f"{where}: unexpected statement {ast.unparse(stmt)}")
    assert used, f"{where}: calls nothing"
    for module, func in used:
        mod = importlib.import_module(module)
        assert callable(getattr(mod, func, None)), f"{where}: {module}.{func} does not exist"
    return used


def literal_parm_reads(module: str) -> set[str]:
    """Parameter names a module reads through its getters (text/num/vec3/value/evalParm/_int/_float)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        args = node.args
        if func in {"text", "num", "vec3", "value", "evalParm", "evalParmTuple"} and args:
            first = args[0]
        elif func in {"_int", "_float"} and len(args) > 1:
            first = args[1]
        else:
            continue
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


# --------------------------------------------------------------------------------------------
# the assets


@dataclass
class Asset:
    root: Path
    typename: str
    table: str
    name: str
    version: str
    definition: Path
    index: dict[str, str]
    sections: dict[str, Path]
    dialog: Block


def load_asset(root: Path) -> Asset:
    top = parse_sections_list(root / "Sections.list")
    files = {p.name for p in root.iterdir()} - {"Sections.list"}
    assert {f for f, _ in top} == files, (
        f"{root}: Sections.list {sorted(f for f, _ in top)} != files {sorted(files)}"
    )
    assert ("INDEX__SECTION", "INDEX_SECTION") in top
    assert ("houdini.hdalibrary", "houdini.hdalibrary") in top
    defs = [(f, s) for f, s in top if s not in ("INDEX_SECTION", "houdini.hdalibrary")]
    assert len(defs) == 1, f"{root}: one definition per .hda folder"
    folder, typename = defs[0]
    m = TYPE_RE.match(typename)
    assert m, f"{root}: type {typename!r} is not mlvfx::Table/name::major.minor"
    assert folder == encode_section_name(typename), f"{root}: folder {folder} != encoded {typename}"
    table, name, version = m.groups()
    assert root.name == f"mlvfx.{name}.{version}.hda", f"{root}: folder name should carry name and version"
    definition = root / folder
    listed = parse_sections_list(definition / "Sections.list")
    assert all(f == s for f, s in listed)
    sections = {}
    for file_name, _ in listed:
        on_disk = definition / ("Contents.dir" if file_name == "Contents.gz" else file_name)
        assert on_disk.exists(), f"{definition}: section {file_name} is listed but missing"
        sections[file_name] = on_disk
    present = {p.name for p in definition.iterdir()} - {"Sections.list"}
    expected = {("Contents.dir" if f == "Contents.gz" else f) for f, _ in listed}
    assert present == expected, f"{definition}: unlisted sections {sorted(present - expected)}"
    assert REQUIRED <= set(sections), f"{definition}: missing {sorted(REQUIRED - set(sections))}"
    index = parse_index(root / "INDEX__SECTION")
    dialog = parse_dialog_script((definition / "DialogScript").read_text())
    return Asset(root, typename, table, name, version, definition, index, sections, dialog)


ASSET_DIRS = sorted(OTLS.glob("*.hda"))


@pytest.fixture(scope="module")
def assets() -> dict[str, Asset]:
    return {a.typename: a for a in (load_asset(d) for d in ASSET_DIRS)}


def test_all_expected_assets_ship(assets):
    assert set(assets) == EXPECTED_TYPES
    for root in ASSET_DIRS:
        assert (root / "houdini.hdalibrary").read_text() == ""


@pytest.mark.parametrize("root", ASSET_DIRS, ids=lambda p: p.name)
def test_index_section_agrees_with_the_type(root):
    a = load_asset(root)
    op = f"mlvfx::{a.name}::{a.version}"
    assert a.index["Operator"] == op
    assert a.index["Table"] == a.table
    assert a.index["Path"] == f"oplib:/{a.typename}?{a.typename}"
    assert a.index["Label"].startswith("mlvfx ")
    lo, hi = (int(v) for v in re.match(r"^(\d+) to (\d+)$", a.index["Inputs"]).groups())
    labels = a.dialog.fields.get("inputlabel", [])
    assert lo <= hi and len(labels) <= hi
    assert [int(lbl[0]) for lbl in labels] == list(range(1, len(labels) + 1))
    python = "PythonCook" in a.sections
    assert a.index["Python"] == ("true" if python else "false")
    assert a.index["Subnet"] == ("true" if "Contents.gz" in a.sections else "false")
    assert python != ("Contents.gz" in a.sections), "an asset is either Python-defined or a subnet"


@pytest.mark.parametrize("root", ASSET_DIRS, ids=lambda p: p.name)
def test_dialog_script_names_the_type_and_has_valid_parms(root):
    a = load_asset(root)
    op = f"mlvfx::{a.name}::{a.version}"
    assert a.dialog.value("name") == op and a.dialog.value("script") == op
    assert str(a.dialog.value("label")).startswith("mlvfx ")
    parms = a.dialog.parms()
    names = [str(p.value("name")) for p in parms]
    assert len(names) == len(set(names)), f"duplicate parms in {op}"
    known = {
        "integer",
        "float",
        "string",
        "toggle",
        "button",
        "file",
        "directory",
        "image",
        "ordinal",
        "vector",
    }
    for p in parms:
        assert p.value("type") in known, f"{op}.{p.value('name')}: type {p.value('type')}"
        assert p.value("label"), f"{op}.{p.value('name')}: no label"
        size = int(str(p.value("size") or 1))
        default = p.fields.get("default", [[]])[0]
        if p.value("type") != "button":
            assert len(default) == size, f"{op}.{p.value('name')}: {size} components, default {default}"


@pytest.mark.parametrize("root", ASSET_DIRS, ids=lambda p: p.name)
def test_help_documents_every_parameter(root):
    a = load_asset(root)
    text = a.sections["Help"].read_text()
    op = f"mlvfx::{a.name}::{a.version}"
    assert text.startswith("= mlvfx "), "help needs a = Title = line"
    assert f"#internal: {op}" in text
    assert re.search(r'^"""[^"\n]{20,}"""$', text, re.M), "help needs a one-line summary"
    ids = set(re.findall(r"#id: (\w+)", text))
    assert ids == {str(p.value("name")) for p in a.dialog.parms()}


@pytest.mark.parametrize("root", ASSET_DIRS, ids=lambda p: p.name)
def test_support_sections_parse(root):
    a = load_asset(root)
    props = parse_type_properties(a.sections["TypePropertiesOptions"].read_text())
    assert props["LockContents"] == "1" and props["UseDSParms"] == "1"
    shelf = ET.fromstring(a.sections["Tools.shelf"].read_text())
    tool = shelf.find("tool")
    assert tool is not None and tool.find("toolSubmenu").text == "mlvfx"
    assert (
        tool.find("toolMenuContext/contextNetType").text
        == {"Sop": "SOP", "Top": "TOP", "Cop2": "COP2"}[a.table]
    )
    for name in ("ExtraFileOptions", "InternalFileOptions"):
        if name in a.sections:
            assert isinstance(json.loads(a.sections[name].read_text()), dict)
    create = a.sections["CreateScript"].read_text()
    assert f"# Node $arg1 ({a.typename})" in create


@pytest.mark.parametrize("root", ASSET_DIRS, ids=lambda p: p.name)
def test_callbacks_and_menu_scripts_are_one_liners_into_mlvfx_houdini(root):
    a = load_asset(root)
    for p in a.dialog.parms():
        tags = p.tags()
        if tags.get("script_callback"):
            assert tags.get("script_callback_language") == "python"
            one_line_calls(tags["script_callback"], f"{a.typename}.{p.value('name')} callback")
        menu = p.fields.get("menu", [None])[0]
        if isinstance(menu, list) and menu and isinstance(menu[0], list):  # a script menu
            assert menu[-2:] == ["language", "python"]
            code = "\n".join(str(line[0]) for line in menu if isinstance(line, list))
            tree = ast.parse(code)
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
            assert len(calls) == 1
            target = ast.unparse(calls[0].func)
            module, _, func = target.rpartition(".")
            assert module.startswith("mlvfx_houdini.")
            assert callable(getattr(importlib.import_module(module), func))


def _menu_tokens(parm: Block) -> list[str]:
    menu = parm.fields["menu"][0]
    return [str(v) for v in menu[0::2]]  # type: ignore[index]


def test_smoke_sop_matches_its_python(assets):
    from mlvfx_houdini import smoke

    a = assets["mlvfx::Sop/smoke_surrogate::1.0"]
    cook = one_line_calls(a.sections["PythonCook"].read_text(), "smoke PythonCook")
    assert cook == [("mlvfx_houdini.smoke", "cook")]
    assert "hou.pwd()" in a.sections["PythonCook"].read_text()
    # Deleting the node frees its frames in memory (event handler, Python).
    deleted = one_line_calls(a.sections["OnDeleted"].read_text(), "smoke OnDeleted")
    assert deleted == [("mlvfx_houdini.events", "smoke_deleted")]  # imports no core (see events.py)
    options = json.loads(a.sections["ExtraFileOptions"].read_text())
    for section in ("PythonCook", "OnDeleted"):
        assert options[f"{section}/IsPython"]["value"] is True
        assert options[f"{section}/IsScript"]["value"] is True
    parms = {str(p.value("name")): p for p in a.dialog.parms()}
    assert set(smoke.PARM_NAMES) <= set(parms)
    assert literal_parm_reads("mlvfx_houdini.smoke") <= set(smoke.PARM_NAMES)
    assert _menu_tokens(parms["mode"]) == list(smoke.MODES)
    assert _menu_tokens(parms["boundary"]) == list(smoke.BOUNDARIES)
    assert parms["source_vel"].value("size") == "3" and parms["center"].value("size") == "3"
    assert parms["model"].fields["default"][0] == [smoke.REFERENCE]
    assert a.index["Inputs"] == "0 to 3"


def test_cop2_matches_its_python(assets):
    from mlvfx_houdini import cop

    a = assets["mlvfx::Cop2/material_maps::1.0"]
    used = one_line_calls(a.sections["PythonCook"].read_text(), "COP2 PythonCook")
    assert {f for _, f in used} == {"cook", "output_planes_to_cook", "resolution"}
    parms = {str(p.value("name")): p for p in a.dialog.parms()}
    assert set(cop.PARM_NAMES) <= set(parms)
    assert literal_parm_reads("mlvfx_houdini.cop") <= set(cop.PARM_NAMES)
    assert _menu_tokens(parms["map"]) == list(cop.MAPS)
    assert _menu_tokens(parms["normal_convention"]) == ["opengl", "directx"]


@pytest.mark.parametrize(
    ("typename", "kind", "names_attr"),
    [
        ("mlvfx::Top/material_from_photo::1.0", "material", "MATERIAL_PARMS"),
        ("mlvfx::Top/texture_synth::1.0", "texture", "TEXTURE_PARMS"),
    ],
)
def test_top_contents_wrap_a_python_processor_calling_mlvfx_houdini(assets, typename, kind, names_attr):
    from mlvfx_houdini import tops

    a = assets[typename]
    contents = a.sections["Contents.gz"]
    assert parse_sections_list(contents / "Sections.list") == [("Contents.mime", "Contents.mime")]
    parts = mime_parts((contents / "Contents.mime").read_text())
    assert parts["node_type"].strip() == "Top"
    assert f"type = mlvfx::{a.name}::{a.version}" in parts["hdaroot.init"]
    assert "type = pythonprocessor" in parts["hdaroot/pythonprocessor1.init"]
    assert "type = output" in parts["hdaroot/output0.init"]
    # The processor reads the subnet's input, and the output reads the processor.
    assert re.search(r"^0 \t\(0\) 0 1$", parts["hdaroot/pythonprocessor1.def"], re.M)
    assert re.search(r"^0 \tpythonprocessor1 0 1$", parts["hdaroot/output0.def"], re.M)

    values = {}
    for line in parts["hdaroot/pythonprocessor1.parm"].splitlines():
        m = re.match(r"^(\w+)\t\[ 0\tlocks=0 \]\t\(\t(.*)\t\)$", line)
        if m:
            values[m.group(1)] = m.group(2)
    generate = bytes(values["generate"][1:-1], "utf-8").decode("unicode_escape")
    cook = bytes(values["cooktask"][1:-1], "utf-8").decode("unicode_escape")
    assert one_line_calls(generate, "onGenerate") == [("mlvfx_houdini.tops", "generate")]
    assert f'upstream_items, "{kind}")' in generate
    assert one_line_calls(cook, "onCookTask") == [("mlvfx_houdini.tops", "cook_task")]
    assert values["pdg_command"] == '""'  # each work item sets its own command

    names = set(getattr(tops, names_attr))
    spare = parse_dialog_script("{\n" + parts["hdaroot/pythonprocessor1.spareparmdef"] + "\n}")
    spare_names = {str(p.value("name")) for p in spare.parms()}
    assert spare_names == names
    assert literal_parm_reads("mlvfx_houdini.tops") <= set(tops.MATERIAL_PARMS) | set(tops.TEXTURE_PARMS)
    outer = {str(p.value("name")): p for p in a.dialog.parms()}
    for name in names:
        # Every inner parm is a backtick reference to the HDA parm of the same name.
        fn = "chs" if outer[name].value("type") in ("string", "file", "directory") else "ch"
        assert values[name] == f'`{fn}(\\"../{name}\\")`', f"{typename}: {name} = {values[name]}"
    assert _menu_tokens(outer["source"]) == ["upstream", "custom"]
    if kind == "texture":
        assert _menu_tokens(outer["operation"]) == list(tops.TEXTURE_OPS)
    else:
        assert _menu_tokens(outer["method"]) == ["learned", "classical"]
        # Presets of the comma-separated maps list replace the field: a toggle menu would add
        # "normal,height,albedo,roughness,ao" to the default with a space, giving an unknown map.
        assert "menureplace" in outer["maps"].fields and "menutoggle" not in outer["maps"].fields
        for preset in outer["maps"].fields["menureplace"][0][0::2]:
            tops.material_jobs(["a.png"], "/out", maps=str(preset))


def test_package_file():
    pkg = json.loads((HDA / "mlvfx.json").read_text())
    assert pkg["enable"] == "houdini_version >= '20.5'"
    assert pkg["hpath"] == "$MLVFX_HOUDINI"
    env = {k: v for entry in pkg["env"] for k, v in entry.items()}
    assert env["MLVFX_HOUDINI"] == "$HOUDINI_PACKAGE_PATH"
    paths = env["PYTHONPATH"]
    assert paths["method"] == "prepend"
    values = [v for cond in paths["value"] for v in cond.values()]
    assert "$MLVFX_VENV/lib/python3.11/site-packages" in values
    assert "$MLVFX_VENV/Lib/site-packages" in values
    # hpath puts otls/ (assets) and python3.11libs/ (mlvfx_houdini) where Houdini looks.
    assert (HDA / "otls").is_dir() and (HDA / "python3.11libs" / "mlvfx_houdini" / "__init__.py").is_file()


def test_linter_catches_a_broken_asset(tmp_path):
    """The linter itself: a missing listed section and a bad type name are both reported."""
    import shutil

    src = OTLS / "mlvfx.smoke_surrogate.1.0.hda"
    broken = tmp_path / src.name
    shutil.copytree(src, broken)
    (broken / encode_section_name("mlvfx::Sop/smoke_surrogate::1.0") / "Help").unlink()
    with pytest.raises(AssertionError, match="Help is listed but missing"):
        load_asset(broken)
    with pytest.raises(AssertionError, match="one-line call"):
        one_line_calls("import mlvfx_houdini.smoke\nmlvfx_houdini.smoke.cook(hou.pwd())", "x")
    with pytest.raises(AssertionError, match="does not exist"):
        one_line_calls("import mlvfx_houdini.smoke; mlvfx_houdini.smoke.nope()", "x")
    with pytest.raises(AssertionError, match="imports os"):
        one_line_calls("import os; os.remove('x')", "x")
    assert encode_section_name("mlvfx::Top/texture_synth::1.0") == "mlvfx_8_8Top_1texture__synth_8_81.0"
