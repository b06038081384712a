"""pack's output bytes stay what they were: the ``SHA256SUMS`` of a few corpus packs, recorded from main
before the speed work (issue 23), so a restructure or a faster checksum that changes one byte shows here."""

from __future__ import annotations

import hashlib

import pytest
from conftest import corpus_path, run_cli

#: case → (corpus ELF, extra ``pack`` options, the ``SHA256SUMS`` that pack wrote on main at c913c5b; only
#: ``flasher_args.json`` re-recorded since, when its ``imgtool.bootloader`` record gained the pinned set and the
#: bootloader's ESP-IDF version and loader rules, issue 19).
RECORDED = {
    "esp32": (
        "esp32",
        (),
        """\
95aa9fb040e51b68a586e95c1c68d07c771555a6cc90fb70111f8723813d1a94 *esp32.bin
97a0ffc6b6de82286366a54b523e57c718e506eea96c78de5a395d4e01487d7b *bootloader.bin
e9534f1b33feb29c471f80d97bd8431aa8f3dba261bf9e482af00f6d73eb1685 *partitions.csv
520c18ca0bda73aed288d427d260ab051d71219f605707350e6c42401f4836fc *partitions.bin
a50ab3383aa97ea50cef98edbe547855a929143e65c4c8fb1c318b1f84dcaa16 *esp32.merged.bin
bb578df7a8965a5609cfe6aa4b965cfc483f0444b5ec44fbe96a4003ce05c756 *flash_args
5670edf00ee699cf023527e646356a753576176db6f74a45488a461160e4dbef *flash_merged_args
5245fe64c993146d99b3e71ff130c10ceae9d230a510d85a30cf7cb58e12227a *flasher_args.json
f524e14905b70e22670925eb2caf926b3295f2d951e2187d8890a716bb994e8b *manifest.json
""",
    ),
    "esp32c6": (
        "esp32c6",
        (),
        """\
c29356e7a682effb85730b70c002e1743dc90b8fa2449a0f2247ba537a6487f8 *esp32c6.bin
74b8940c657cc73c6b04b0d3cb2f543bdc6c61e4d5bff7a6b0694d693e05008b *bootloader.bin
e9534f1b33feb29c471f80d97bd8431aa8f3dba261bf9e482af00f6d73eb1685 *partitions.csv
520c18ca0bda73aed288d427d260ab051d71219f605707350e6c42401f4836fc *partitions.bin
4b7df21f4800531e68778a2d45b8594a2556c5fd0d175dbb172420a6a3603eee *esp32c6.merged.bin
f56b69574b5102ccaacdfa8ecee364b664c84c452bacf68af059a4e3b3bb84fc *flash_args
68066285992b1310ee64ffa54354d823a0187a9fa8431d881e9e716f95f31e13 *flash_merged_args
17805bbecfe7cd910c661a8a68311199e8a02aa22aae6402ea4118a2c4496d9e *flasher_args.json
a1aa5b0b928094493ed58c008b1b3eeada80b46cdcf40948a54af3d8864101bc *manifest.json
""",
    ),
    "esp32s2": (
        "esp32s2",
        (),
        """\
c98e2fe226c7fb22a33c54bf448adbc193f98f9346e1ed74fb50a28fd4f31c24 *esp32s2.bin
4e152ccbca3145f3bb466990660d032cb30c8b311d60c58589d23d95f997da08 *bootloader.bin
e9534f1b33feb29c471f80d97bd8431aa8f3dba261bf9e482af00f6d73eb1685 *partitions.csv
520c18ca0bda73aed288d427d260ab051d71219f605707350e6c42401f4836fc *partitions.bin
15d41435964856146829c5a431f163594990226bad2a6d84347fce09540aad04 *esp32s2.merged.bin
b20d0deeec552dfda6232286dc44d47723b36056d2b5afe1f8eeb6b0e5fd0d79 *flash_args
206b5c6347626cb651babc1f11a14a894c132c73f1b308fae2d2e147f91c9b96 *flash_merged_args
d95270045e609a8e92a2e89eb2d2c2fa3dda155a31d4b4a8b86bf1b95ed06356 *flasher_args.json
96251bdc9c1a40e6783be4b86408743a97087c4425ab79dc5d6e9d0f34f1fef5 *manifest.json
""",
    ),
    "esp32-fill-4MB": (
        "esp32",
        ("--flash-size", "4MB", "--fill-flash-size"),
        """\
81ccb9e1edb48e3240ec9a45261dc15332352f3c6b4cd33f394d22f1eadf7962 *esp32.bin
528faf022d3b07508a136bf17df34b99fc21bb543cdd829c3d2261c393de6d81 *bootloader.bin
5ee28d306fea46501b2074f20b9182558457261bc46c738e7f74a1042e8795ba *partitions.csv
c9a826e85500d14d1854ce78e47452d4614a1be371bbd056278d2cb3398fbbfd *partitions.bin
30aed2f4d7d3b5414601511e358edfbc7ead7ad2e4822c3b30a5df4fdebe6cbe *esp32.merged.bin
9a95ffabe8ccacc856d3f1354294e47e3c574a4d7ab160ce1e631522c2ca5e00 *flash_args
e84e6750bd06813389b08d08e0bf3e10803af4cdf38f7865f505ff9e3992e1ad *flash_merged_args
54cdb011cb7d52e082f9cac0fa0df5b7484b09ee77b1b172361bb4fe7ca5c256 *flasher_args.json
f524e14905b70e22670925eb2caf926b3295f2d951e2187d8890a716bb994e8b *manifest.json
""",
    ),
}


@pytest.mark.parametrize("case", list(RECORDED))
def test_pack_output_bytes_match_the_recorded_sums(case, tmp_path, monkeypatch):
    elf_name, options, recorded = RECORDED[case]
    elf = corpus_path("elf", elf_name)
    monkeypatch.setenv("IMGTOOL_BOOTLOADER_MIRROR", str(corpus_path("bootloaders")))
    monkeypatch.setenv("IMGTOOL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no project file of the test run's folder takes part
    out = tmp_path / "out"
    result = run_cli("pack", elf, "-o", out, "-q", *options)
    assert result.exit_code == 0, result.output
    sums = (out / "SHA256SUMS").read_text(encoding="utf-8")
    assert sums == recorded
    # and the sums are those of the bytes on disk, every output listed
    listed = dict(reversed(line.split(" *", 1)) for line in sums.splitlines())
    assert {p.name for p in out.iterdir()} == {*listed, "SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
