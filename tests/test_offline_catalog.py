"""Tests of the offline JSOC's series catalog and record-set engine."""

import re

import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time
from sunpy.coordinates.sun import carrington_rotation_number

from sunpy_jsoc_cutout.testing import catalog
from sunpy_jsoc_cutout.testing.catalog import (
    Record,
    RecordSetError,
    UnknownSeries,
    format_time,
    get_series,
    parse_time,
    query,
    rs_list_body,
    rs_summary_body,
    series_struct,
)


def trecs(records):
    return [r.keyword("T_REC") for r in records]


# --- the three real outputs of jsoc-api.md section 4 ---------------------------------------------


def test_aia_12s_range_takes_every_slot_whose_bin_it_touches():
    # sunpy JSOCClient docstring: 2014-01-01 00:00:00-00:00:36 UTC sent as TAI gives 4 T_RECs.
    records, _ = query("aia.lev1_euv_12s[2014.01.01_00:00:35_TAI-2014.01.01_00:01:11_TAI][171]")
    assert trecs(records) == [
        "2014-01-01T00:00:01Z",
        "2014-01-01T00:00:13Z",
        "2014-01-01T00:00:25Z",
        "2014-01-01T00:00:37Z",
    ]


def test_hmi_45s_range_gives_fourteen_records_printed_in_tai():
    records, segments = query("hmi.M_45s[2014.01.01_00:00:35_TAI-2014.01.01_00:10:35_TAI]")
    assert len(records) == 14
    assert records[0].keyword("T_REC") == "2014.01.01_00:00:45_TAI"
    assert records[-1].keyword("T_REC") == "2014.01.01_00:10:30_TAI"
    assert segments == ["magnetogram"]


@pytest.mark.parametrize(
    "ds",
    [
        "aia.lev1_euv_12s[2011.02.15_00:00:34_TAI-2011.02.15_00:01:34_TAI][171]",
        "aia.lev1_euv_12s[2011-02-15T00:00:00Z-2011-02-15T00:01:00Z][171]",
    ],
)
def test_one_minute_in_2011_gives_six_frames_with_seconds_shifted_by_leap_seconds(ds):
    records, _ = query(ds)
    assert len(records) == 6
    assert trecs(records)[:2] == ["2011-02-15T00:00:02Z", "2011-02-15T00:00:14Z"]


# --- ranges, durations, cadence, time forms -----------------------------------------------------


def test_duration_is_half_open_in_whole_slots():
    records, _ = query("aia.lev1_euv_12s[2011-02-15T00:00:00Z/1m][171]")
    assert len(records) == 5
    records, _ = query("aia.lev1_euv_12s[2014.02.05_8:00/8h][171,193,211,304]")
    assert len(records) == 8 * 300 * 4


def test_duration_units_s_m_h_d():
    base = "hmi.M_45s[2014.02.05_00:00:00_TAI/{}]"
    counts = [len(query(base.format(d))[0]) for d in ("900s", "15m", "1h", "1d")]
    assert counts == [20, 20, 80, 1920]


def test_cadence_keeps_every_nth_slot_from_the_first_slot_of_the_range():
    all_records, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/10m][171]")
    thinned, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/10m@60s][171]")
    assert [r.recnum for r in thinned] == [r.recnum for r in all_records[::5]]
    assert len(thinned) == 10
    steps = np.diff([r.tai_seconds for r in thinned])
    assert np.all(steps == 60)


def test_cadence_on_a_range():
    records, _ = query("hmi.M_45s[2014.02.05_08:00:00_TAI-2014.02.05_09:00:00_TAI@90s]")
    assert len(records) == 41
    assert records[0].keyword("T_REC") == "2014.02.05_08:00:00_TAI"


@pytest.mark.parametrize(
    "when",
    [
        "2014.02.05_08:00:00_TAI",
        "2014.02.05_08:00_TAI",
        "2014.02.05_07:59:25",
        "2014.02.05_7:59:25_UTC",
        "2014-02-05T07:59:25Z",
        "2014-02-05T07:59:25",
        "2014-02-05 07:59:25",
        "2014-02-05T07:59:27.9Z",
    ],
)
def test_time_forms_select_the_same_slot(when):
    records, _ = query(f"aia.lev1_euv_12s[{when}][171]")
    assert trecs(records) == ["2014-02-05T07:59:25Z"]


def test_parse_and_format_time_agree_with_astropy():
    t = parse_time("2014.02.05_08:00:00_TAI")
    assert t.scale == "tai"
    assert t.utc.isot == "2014-02-05T07:59:25.000"
    assert format_time(Time("2014-02-05T08:00:01", scale="utc")) == "2014-02-05T08:00:01Z"
    assert format_time(Time("2014-02-05T08:00:00", scale="tai"), "tai") == "2014.02.05_08:00:00_TAI"
    # Random instants across several leap seconds print as astropy prints them.
    rng = np.random.default_rng(1)
    for mjd in rng.uniform(55317, 60000, 50):
        t = Time(mjd, format="mjd", scale="tai")
        assert format_time(t, decimals=3) == t.utc.isot + "Z"


def test_leap_second_prints_as_second_sixty():
    t = Time("2012-06-30T23:59:60.5", scale="utc")
    assert format_time(t, decimals=1) == "2012-06-30T23:59:60.5Z"
    assert abs((parse_time("2012-06-30T23:59:60.5Z") - t).to_value("s")) < 1e-6


def test_bad_time_is_refused():
    with pytest.raises(RecordSetError, match="Bad record-set query"):
        parse_time("yesterday")


# --- the second key, lists, where clauses ----------------------------------------------------------


def test_wavelength_list_sorted_by_time_then_wavelength():
    records, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/24s][304,171,211,193]")
    assert [(r.keyword("T_REC"), r.wavelength) for r in records] == [
        ("2014-02-05T07:59:25Z", 171),
        ("2014-02-05T07:59:25Z", 193),
        ("2014-02-05T07:59:25Z", 211),
        ("2014-02-05T07:59:25Z", 304),
        ("2014-02-05T07:59:37Z", 171),
        ("2014-02-05T07:59:37Z", 193),
        ("2014-02-05T07:59:37Z", 211),
        ("2014-02-05T07:59:37Z", 304),
    ]


def test_empty_brackets_skip_a_key_and_named_keys_work():
    every, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][]")
    assert sorted(r.wavelength for r in every) == [94, 131, 171, 193, 211, 304, 335]
    named, _ = query("aia.lev1_euv_12s[WAVELNTH=193][T_REC=2014.02.05_08:00:00_TAI]")
    assert [r.wavelength for r in named] == [193]
    ranged, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][100-200]")
    assert [r.wavelength for r in ranged] == [131, 171, 193]


def test_uv_series_has_its_own_channels_and_cadence():
    records, _ = query("aia.lev1_uv_24s[2014.02.05_08:00:00_TAI/2m][1700]")
    assert len(records) == 5
    assert all(r.keyword("INSTRUME") == "AIA_3" for r in records)
    assert query("aia.lev1_uv_24s[2014.02.05_08:00:00_TAI][171]")[0] == []


def test_aia_lev1_where_clause_selects_one_channel():
    records, _ = query("aia.lev1[2014.02.05_08:00/1m][? WAVELNTH=171 ?]")
    assert len(records) == 5
    assert {r.wavelength for r in records} == {171}
    assert np.all(np.diff([r.tai_seconds for r in records]) == 12)
    assert records[0].spec == f"aia.lev1[2014-02-05T08:00:02Z][{records[0].fsn}]"


def test_aia_lev1_has_every_channel_at_distinct_one_second_slots():
    records, _ = query("aia.lev1[2014.02.05_08:00:00_TAI/2m]")
    by_wave = {}
    for r in records:
        by_wave.setdefault(r.wavelength, []).append(r)
    assert sorted(by_wave) == [94, 131, 171, 193, 211, 304, 335, 1600, 1700]
    assert {len(v) for w, v in by_wave.items() if w < 1000} == {10}
    assert {len(v) for w, v in by_wave.items() if w > 1000} == {5}
    assert len({r.keyword("T_REC") for r in records}) == len(records)
    assert [r.fsn for r in records] == sorted(r.fsn for r in records)
    assert all(r.keyword("FSN") == str(r.fsn) for r in records)


def test_aia_lev1_exposure_matches_the_12s_series():
    lev1, _ = query("aia.lev1[2014.02.05_08:00:00_TAI/12s][? WAVELNTH = 193 ?]")
    euv, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/12s][193]")
    assert lev1[0].keyword("T_OBS") == euv[0].keyword("T_OBS")
    assert lev1[0].keyword("FSN") == euv[0].keyword("FSN")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("WAVELNTH in (171, 304)", {171, 304}),
        ("QUALITY >= 0", {94, 131, 171, 193, 211, 304, 335, 1600, 1700}),
        ("QUALITY < 0", set()),
        ("drms.image_exists(quality)", {94, 131, 171, 193, 211, 304, 335, 1600, 1700}),
        ("WAVELNTH = 1600 or WAVELNTH = 94", {94, 1600}),
        ("WAVELNTH > 200 and WAVELNTH < 1000", {211, 304, 335}),
    ],
)
def test_where_clauses(where, expected):
    records, _ = query(f"aia.lev1[2014.02.05_08:00:00_TAI/1m][? {where} ?]")
    assert {r.wavelength for r in records} == expected


def test_where_clause_combines_with_key_filters():
    records, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171,193][? WAVELNTH=193 ?]")
    assert [r.wavelength for r in records] == [193]


# --- special values and data coverage --------------------------------------------------------------


def test_last_and_first_records():
    last, _ = query("aia.lev1_euv_12s[$][171]")
    assert len(last) == 1
    assert last[0].t_rec <= Time.now()
    first, _ = query("hmi.M_45s[^]")
    assert first[0].keyword("T_REC").startswith("2010.05.01_00:0")


def test_no_records_before_may_2010():
    assert query("aia.lev1_euv_12s[2010.04.30_23:00:00_TAI/1h][171]")[0] == []
    records, _ = query("aia.lev1_euv_12s[2010.04.30_23:59:00_UTC/2m][171]")
    assert len(records) == 5
    assert all(r.keyword("T_REC") >= "2010-05-01" for r in records)


# --- segments ---------------------------------------------------------------------------------------


def test_segment_lists():
    assert query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171]")[1] == ["image", "spikes"]
    assert query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171]{image}")[1] == ["image"]
    assert query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171]{Spikes,image}")[1] == ["spikes", "image"]
    with pytest.raises(RecordSetError, match="not a segment"):
        query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171]{magnetogram}")


# --- errors -----------------------------------------------------------------------------------------


def test_unknown_series():
    with pytest.raises(UnknownSeries, match=r"Cannot export series 'aia.lev9' - it does not exist\."):
        query("aia.lev9[2014.02.05_08:00:00_TAI]")
    with pytest.raises(UnknownSeries):
        get_series("nope")
    assert get_series("HMI.m_45S").name == "hmi.M_45s"


@pytest.mark.parametrize(
    "ds",
    [
        "aia.lev1_euv_12s[2014.02.05_08:00:00_TAI",
        "aia.lev1_euv_12s(2014)",
        "aia.lev1_euv_12s[not a time][171]",
        "aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/8x][171]",
        "aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171][3]",
        "aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][one]",
        "aia.lev1_euv_12s[FOO=3]",
        "aia.lev1_euv_12s[? WAVELNTH=171 ]",
        "[2014.02.05_08:00:00_TAI]",
    ],
)
def test_bad_record_sets_are_refused(ds):
    with pytest.raises(RecordSetError, match="Bad record-set query"):
        query(ds)


def test_too_many_records_are_refused():
    with pytest.raises(RecordSetError, match="too many records"):
        query("hmi.M_45s[][2]")


# --- records and keywords --------------------------------------------------------------------------


def test_hmi_record_prints_tai():
    (rec,), _ = query("hmi.M_45s[2014.02.05_08:00:00_TAI][2]")
    assert rec.spec == "hmi.M_45s[2014.02.05_08:00:00_TAI][2]"
    assert rec.keyword("T_OBS") == "2014.02.05_08:00:00.00_TAI"
    assert (rec.camera, rec.wavelength, rec.fsn) == (2, None, None)
    assert rec.keyword("TELESCOP") == "SDO/HMI"
    assert rec.keyword("CAMERA") == "2"
    assert rec.keyword("FSN") == "Invalid KeyLink"
    assert rec.t_rec.scale == "tai"
    assert rec.t_rec.isot == "2014-02-05T08:00:00.000"


def test_aia_record_keywords():
    (rec,), _ = query("aia.lev1_euv_12s[2014-02-05T08:00:01Z][171]")
    assert rec.spec == "aia.lev1_euv_12s[2014-02-05T08:00:01Z][171]"
    assert rec.keyword("T_OBS") == "2014-02-05T08:00:01.84Z"
    assert rec.keyword("t_rec") == "2014-02-05T08:00:01Z"
    assert rec.keyword("WAVELNTH") == "171"
    assert rec.keyword("QUALITY") == "0x00000000"
    assert rec.keyword("TELESCOP") == "SDO/AIA"
    assert rec.keyword("EXPTIME") == "2"
    assert rec.keyword("*recnum*") == str(rec.recnum)
    assert rec.keyword("NOSUCHKEY") == "Invalid KeyLink"
    expected = int(carrington_rotation_number(rec.t_obs))
    assert rec.keyword("CAR_ROT") == str(expected) == "2146"
    assert abs((rec.t_obs - rec.t_rec).to_value("s") - 0.84) < 1e-6
    assert rec.t_rec.utc.isot == "2014-02-05T08:00:01.000"


@pytest.mark.parametrize(
    ("wave", "camera"),
    [(94, 4), (131, 1), (171, 3), (193, 2), (211, 2), (304, 4), (335, 1), (1600, 3), (1700, 3)],
)
def test_aia_instrument_camera_numbers(wave, camera):
    records, _ = query(f"aia.lev1[2014.02.05_08:00:00_TAI/1m][? WAVELNTH={wave} ?]")
    assert {r.keyword("INSTRUME") for r in records} == {f"AIA_{camera}"}


def test_record_numbers_are_unique_and_stable():
    first, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/1m]")
    again, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:12_TAI/1m]")
    assert len({r.recnum for r in first}) == len(first)
    assert first[7:] == again[:-7]
    assert hash(first[7]) == hash(again[0])


def test_record_built_directly_from_times():
    series = get_series("aia.lev1_euv_12s")
    t = Time("2014-02-05T08:00:36", scale="tai")
    rec = Record(series, t, t + 0.84 * u.s, 171, None, None, 1)
    assert rec.spec == "aia.lev1_euv_12s[2014-02-05T08:00:01Z][171]"
    assert rec.keyword("INSTRUME") == "AIA_3"


def test_many_records_are_generated():
    records, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/8h][171,193,211,304]")
    assert len(records) == 9600
    assert len({r.recnum for r in records}) == 9600


# --- jsoc_info bodies ------------------------------------------------------------------------------


def test_rs_list_body_shapes():
    records, _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/24s][171]")
    body = rs_list_body(records, "T_REC,WAVELNTH,BOGUS,*recnum*", ["image", "nope"])
    assert body["status"] == 0
    assert body["count"] == 2
    keys = {k["name"]: k["values"] for k in body["keywords"]}
    assert keys["T_REC"] == ["2014-02-05T07:59:25Z", "2014-02-05T07:59:37Z"]
    assert keys["WAVELNTH"] == ["171", "171"]
    assert keys["BOGUS"] == ["Invalid KeyLink"] * 2
    assert all(isinstance(v, str) for values in keys.values() for v in values)
    image, nope = body["segments"]
    assert image["name"] == "image"
    assert all(re.fullmatch(r"/SUM\d+/D\d+/S\d{5}/image_lev1\.fits", p) for p in image["values"])
    assert image["dims"] == ["4096x4096"] * 2
    assert set(image) == {"name", "values", "dims", "cparms", "bzeros", "bscales"}
    assert nope["values"] == ["InvalidSegName"] * 2
    assert rs_list_body(records, ["T_REC"])["keywords"][0]["name"] == "T_REC"
    assert rs_summary_body(records) == {"count": 2, "runtime": pytest.approx(0.01), "status": 0}


def test_rs_list_all_keywords():
    records, _ = query("hmi.M_45s[2014.02.05_08:00:00_TAI]")
    body = rs_list_body(records, "**ALL**")
    names = [k["name"] for k in body["keywords"]]
    assert "T_REC" in names
    assert "CAR_ROT" in names
    assert all(v != "Invalid KeyLink" for k in body["keywords"] for v in k["values"])


@pytest.mark.parametrize(
    ("name", "primekeys", "step", "dims"),
    [
        ("aia.lev1_euv_12s", ["T_REC", "WAVELNTH"], "12", "4096x4096"),
        ("aia.lev1_uv_24s", ["T_REC", "WAVELNTH"], "24", "4096x4096"),
        ("aia.lev1", ["T_REC", "FSN"], "1", "4096x4096"),
        ("hmi.M_45s", ["T_REC", "CAMERA"], "45", "4096x4096"),
        ("hmi.Ic_45s", ["T_REC", "CAMERA"], "45", "4096x4096"),
        ("hmi.M_720s", ["T_REC", "CAMERA"], "720", "4096x4096"),
    ],
)
def test_series_struct(name, primekeys, step, dims):
    body = series_struct(get_series(name))
    assert body["status"] == 0
    assert body["primekeys"] == primekeys
    assert body["primekeysinfo"][0] == {"name": "T_REC", "slotted": 1, "step": step}
    assert body["primekeysinfo"][1]["slotted"] == 0
    assert body["segments"][0]["dims"] == dims
    assert set(body["segments"][0]) >= {"name", "type", "units", "protocol", "dims"}
    assert {k["name"] for k in body["keywords"]} >= {"T_REC", "T_OBS", "QUALITY", "CAR_ROT"}
    assert all(set(k) >= {"name", "type", "units", "note"} for k in body["keywords"])
    assert body["Interval"]["FirstRecord"].startswith(get_series(name).name + "[2010")
    for key in ("note", "retention", "unitsize", "archive", "tapegroup", "dbindex", "links", "runtime"):
        assert key in body


def test_series_table_keys_are_lower_case():
    assert set(catalog.SERIES) >= {"aia.lev1_euv_12s", "aia.lev1_uv_24s", "aia.lev1", "hmi.m_45s"}
    assert all(k == s.name.lower() for k, s in catalog.SERIES.items())


# --- issue 3: HMI series, SHARP CEA, NOAA active regions -----------------------------------------


@pytest.mark.parametrize(
    ("ds", "specs"),
    [
        (
            "hmi.Ic_45s[2014.02.05_08:00:00_TAI/90s][2]{continuum}",
            ["hmi.Ic_45s[2014.02.05_08:00:00_TAI][2]", "hmi.Ic_45s[2014.02.05_08:00:45_TAI][2]"],
        ),
        (
            "hmi.M_720s[2014.02.05_08:00:00_TAI/24m]",
            ["hmi.M_720s[2014.02.05_08:00:00_TAI][3]", "hmi.M_720s[2014.02.05_08:12:00_TAI][3]"],
        ),
    ],
)
def test_hmi_series_have_tai_slots_and_camera_prime_key(ds, specs):
    records, _ = query(ds)
    assert [r.spec for r in records] == specs


def test_hmi_720s_records_come_from_the_combined_cameras():
    (record,), segments = query("hmi.M_720s[2014.02.05_08:00:00_TAI]")
    assert record.keyword("CAMERA") == "3"
    assert record.keyword("INSTRUME") == "HMI_COMBINED"
    assert segments == ["magnetogram"]


def test_sharp_cea_series_has_harpnum_first_and_cea_coordinates():
    records, segments = query("hmi.sharp_cea_720s[3563][2014.02.05_08:00:00_TAI/1h]{Br}")
    assert [r.spec for r in records][:2] == [
        "hmi.sharp_cea_720s[3563][2014.02.05_08:00:00_TAI]",
        "hmi.sharp_cea_720s[3563][2014.02.05_08:12:00_TAI]",
    ]
    assert len(records) == 5
    assert segments == ["Br"]
    assert (records[0].keyword("CTYPE1"), records[0].keyword("CTYPE2")) == ("CRLN-CEA", "CRLT-CEA")
    assert records[0].keyword("NOAA_AR") == "11967"
    assert series_struct(get_series("hmi.sharp_cea_720s"))["primekeys"] == ["HARPNUM", "T_REC"]


def test_sharp_cea_refuses_a_time_in_the_harpnum_slot():
    with pytest.raises(RecordSetError, match="Bad record-set query"):
        query("hmi.sharp_cea_720s[2014.02.05_07:59:45_TAI-2014.02.05_08:00:15_TAI]")


def test_helioprojective_series_report_tan_ctypes():
    (record,), _ = query("aia.lev1_euv_12s[2014.02.05_08:00:00_TAI][171]")
    assert (record.keyword("CTYPE1"), record.keyword("CTYPE2")) == ("HPLN-TAN", "HPLT-TAN")


def noaa(ds):
    records, _ = query(ds)
    body = rs_list_body(records, "ObservationTime,LatitudeHG,LongitudeCM,LongitudeHG,RegionNumber")
    return {k["name"]: k["values"] for k in body["keywords"]}


def test_noaa_lookup_as_the_web_form_sends_it():
    values = noaa("su_rsb.NOAA_ActiveRegions[][11967]")
    assert set(values["RegionNumber"]) == {"11967"}
    assert values["ObservationTime"][0] == "2014.01.31_00:00:00Z"
    assert "2014.02.05_00:00:00Z" in values["ObservationTime"]
    # The form takes the entry with the smallest |LongitudeCM|: near disk centre on 2014-02-05/06.
    best = min(range(len(values["LongitudeCM"])), key=lambda i: abs(int(values["LongitudeCM"][i])))
    assert values["ObservationTime"][best] == "2014.02.06_00:00:00Z"
    assert abs(int(values["LongitudeCM"][best])) <= 10


def test_noaa_positions_agree_with_sunpy_and_rotate_thirteen_degrees_a_day():
    from sunpy.coordinates import sun as sunpy_sun

    values = noaa("su_rsb.NOAA_ActiveRegions[][11967]")
    lon_cm = np.array([int(v) for v in values["LongitudeCM"]])
    assert np.all(np.abs(np.diff(lon_cm) - 13.2) <= 1.0)
    for time, cm, hg in zip(values["ObservationTime"], lon_cm, values["LongitudeHG"], strict=True):
        t = Time(time.replace(".", "-", 2).replace("_", "T").rstrip("Z"), scale="utc")
        expected = (int(hg) - sunpy_sun.L0(t).deg + 180) % 360 - 180
        assert abs(cm - expected) <= 1.0
    assert set(values["LatitudeHG"]) == {"-12"}


def test_noaa_records_of_one_day_list_the_regions_on_the_disk():
    values = noaa("su_rsb.NOAA_ActiveRegions[2014.02.05_00:00:00Z]")
    assert values["RegionNumber"] == ["11959", "11967", "11976"]
    assert all(abs(int(v)) <= 90 for v in values["LongitudeCM"])


def test_unknown_noaa_region_has_no_records():
    records, _ = query("su_rsb.NOAA_ActiveRegions[][11111]")
    assert records == []


def test_noaa_series_struct_lists_its_prime_keys():
    body = series_struct(get_series("su_rsb.noaa_activeregions"))
    assert body["primekeys"] == ["ObservationTime", "RegionNumber"]
    assert {k["name"] for k in body["keywords"]} >= {"ObservationTime", "LatitudeHG", "LongitudeCM"}


def test_time_with_one_letter_zone_glued_on():
    assert parse_time("2014.02.05_00:00:00Z") == parse_time("2014-02-05T00:00:00Z")
