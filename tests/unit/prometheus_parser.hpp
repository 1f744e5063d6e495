// SPDX-License-Identifier: MIT
// A small, strict parser of the Prometheus text exposition format (version 0.0.4), for the
// tests of <sekuire/metrics.hpp> and of the programs that serve /metrics. It refuses more
// than Prometheus does: everything a scraper might choke on is an error here.
//
//   - lines end with \n, the text ends with \n, no blank lines and no carriage returns;
//   - `# HELP name text` (escapes \\ and \n only) and `# TYPE name type` at most once per
//     family, before its samples; every family has a TYPE;
//   - samples: `name{label="value",...} value` (no timestamps), with valid metric and label
//     names, label values escaping only \\, \" and \n, no label named twice, no series twice;
//   - a family's samples are contiguous (a family never comes back after another one);
//   - counters are not negative or NaN; a histogram's buckets per label set have
//     ascending `le` ending at +Inf, cumulative counts that never decrease, and the +Inf
//     bucket equals `_count`; `_sum` and `_count` are present.
#ifndef SEKUIRE_TESTS_PROMETHEUS_PARSER_HPP
#define SEKUIRE_TESTS_PROMETHEUS_PARSER_HPP

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace prometheus_check {

struct sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
};

struct family {
    std::string name;
    std::string type;
    std::string help;
    std::vector<sample> samples;
};

struct result {
    std::vector<family> families;
    std::string error; // empty when the text is valid

    const family* find(const std::string& name) const {
        for (const auto& f : families)
            if (f.name == name) return &f;
        return nullptr;
    }

    /// The value of the sample `name` with exactly `labels`, if there is one.
    std::optional<double> value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
        for (const auto& f : families)
            for (const auto& s : f.samples)
                if (s.name == name && s.labels == labels) return s.value;
        return std::nullopt;
    }
};

inline bool is_metric_name(const std::string& n) {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

inline bool is_label_name(const std::string& n) {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

inline bool parse_value(const std::string& s, double& out) {
    if (s == "NaN") {
        out = std::nan("");
        return true;
    }
    if (s == "+Inf" || s == "Inf") {
        out = HUGE_VAL;
        return true;
    }
    if (s == "-Inf") {
        out = -HUGE_VAL;
        return true;
    }
    if (s.empty()) return false;
    for (const char c : s)
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return false;
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return end == s.c_str() + s.size();
}

// The family a sample name belongs to, given the TYPE lines seen.
inline std::string family_of(const std::string& sample_name, const std::map<std::string, std::string>& types) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string sfx = suffix;
        if (sample_name.size() > sfx.size() && sample_name.compare(sample_name.size() - sfx.size(), sfx.size(), sfx) == 0) {
            const std::string base = sample_name.substr(0, sample_name.size() - sfx.size());
            const auto it = types.find(base);
            if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
        }
    }
    return sample_name;
}

inline result parse(const std::string& text) {
    result r;
    auto fail = [&](const std::string& why, std::size_t line_no) {
        r.error = "line " + std::to_string(line_no) + ": " + why;
        return r;
    };
    if (text.empty()) return r;
    if (text.back() != '\n') return fail("the text does not end with a line break", 0);
    std::map<std::string, std::string> types;
    std::set<std::string> helps, closed, series;
    std::string current;
    std::size_t pos = 0, line_no = 0;
    auto family_ref = [&](const std::string& name) -> family& {
        for (auto& f : r.families)
            if (f.name == name) return f;
        r.families.push_back(family{name, "", "", {}});
        return r.families.back();
    };
    auto enter = [&](const std::string& name) -> bool {
        if (name == current) return true;
        if (closed.count(name)) return false;
        if (!current.empty()) closed.insert(current);
        current = name;
        return true;
    };
    while (pos < text.size()) {
        ++line_no;
        const auto nl = text.find('\n', pos);
        const std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.empty()) return fail("blank line", line_no);
        if (line.find('\r') != std::string::npos) return fail("carriage return", line_no);
        if (line[0] == '#') {
            if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
                const bool help = line[2] == 'H';
                const auto sp = line.find(' ', 7);
                const std::string name = line.substr(7, sp == std::string::npos ? std::string::npos : sp - 7);
                if (!is_metric_name(name)) return fail("invalid metric name in a comment: " + name, line_no);
                if (!enter(name)) return fail("family " + name + " comes back after another one", line_no);
                family& f = family_ref(name);
                if (help) {
                    if (!helps.insert(name).second) return fail("second HELP for " + name, line_no);
                    std::string doc = sp == std::string::npos ? "" : line.substr(sp + 1);
                    std::string out;
                    for (std::size_t i = 0; i < doc.size(); ++i) {
                        if (doc[i] != '\\') {
                            out += doc[i];
                            continue;
                        }
                        if (++i >= doc.size()) return fail("dangling escape in HELP", line_no);
                        if (doc[i] == '\\') out += '\\';
                        else if (doc[i] == 'n') out += '\n';
                        else return fail("invalid escape in HELP", line_no);
                    }
                    f.help = out;
                } else {
                    if (types.count(name)) return fail("second TYPE for " + name, line_no);
                    if (!f.samples.empty()) return fail("TYPE after samples of " + name, line_no);
                    if (sp == std::string::npos) return fail("TYPE without a type", line_no);
                    const std::string type = line.substr(sp + 1);
                    if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped")
                        return fail("unknown type " + type, line_no);
                    types[name] = type;
                    f.type = type;
                }
            }
            continue;
        }
        // A sample.
        std::size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
        sample s;
        s.name = line.substr(0, i);
        if (!is_metric_name(s.name)) return fail("invalid metric name " + s.name, line_no);
        if (i < line.size() && line[i] == '{') {
            ++i;
            for (;;) {
                if (i < line.size() && line[i] == '}') {
                    ++i;
                    break;
                }
                const auto eq = line.find('=', i);
                if (eq == std::string::npos) return fail("label without =", line_no);
                const std::string ln = line.substr(i, eq - i);
                if (!is_label_name(ln)) return fail("invalid label name " + ln, line_no);
                i = eq + 1;
                if (i >= line.size() || line[i] != '"') return fail("label value without quotes", line_no);
                ++i;
                std::string v;
                for (;;) {
                    if (i >= line.size()) return fail("unterminated label value", line_no);
                    const char c = line[i++];
                    if (c == '"') break;
                    if (c == '\\') {
                        if (i >= line.size()) return fail("dangling escape", line_no);
                        const char e = line[i++];
                        if (e == '\\') v += '\\';
                        else if (e == '"') v += '"';
                        else if (e == 'n') v += '\n';
                        else return fail("invalid escape in a label value", line_no);
                    } else {
                        v += c;
                    }
                }
                if (!s.labels.emplace(ln, v).second) return fail("label " + ln + " given twice", line_no);
                if (i < line.size() && line[i] == ',') ++i;
                else if (i >= line.size() || line[i] != '}') return fail("expected , or }", line_no);
            }
        }
        if (i >= line.size() || line[i] != ' ') return fail("no value", line_no);
        const std::string rest = line.substr(i + 1);
        if (rest.find(' ') != std::string::npos) return fail("timestamps or extra fields are not expected", line_no);
        if (!parse_value(rest, s.value)) return fail("invalid value " + rest, line_no);
        const std::string fam = family_of(s.name, types);
        if (!types.count(fam)) return fail("sample of " + fam + " without a TYPE before it", line_no);
        if (!enter(fam)) return fail("family " + fam + " comes back after another one", line_no);
        std::string key = s.name + "{";
        for (const auto& kv : s.labels) key += kv.first + "=" + kv.second + ",";
        if (!series.insert(key).second) return fail("series given twice: " + key, line_no);
        const std::string& type = types[fam];
        if (type == "counter" && (std::isnan(s.value) || s.value < 0)) return fail("negative or NaN counter", line_no);
        if (type == "histogram") {
            const bool bucket = s.name == fam + "_bucket";
            if (bucket != (s.labels.count("le") == 1)) return fail("le only on buckets, always on buckets", line_no);
            if (s.name != fam + "_bucket" && s.name != fam + "_sum" && s.name != fam + "_count")
                return fail("histogram sample " + s.name, line_no);
        } else if (s.name != fam) {
            return fail("sample " + s.name + " in family " + fam, line_no);
        }
        family_ref(fam).samples.push_back(s);
    }
    // Histograms: per label set, ascending le ending at +Inf, cumulative, +Inf == _count, _sum present.
    for (const auto& f : r.families) {
        if (f.type.empty()) return fail("family " + f.name + " has no TYPE", 0);
        if (f.type != "histogram") continue;
        std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
        std::map<std::map<std::string, std::string>, double> counts, sums;
        for (const auto& s : f.samples) {
            auto labels = s.labels;
            if (s.name == f.name + "_bucket") {
                double le = 0;
                if (!parse_value(labels["le"], le) || std::isnan(le)) return fail("invalid le " + labels["le"], 0);
                labels.erase("le");
                buckets[labels].emplace_back(le, s.value);
            } else if (s.name == f.name + "_count") {
                counts[labels] = s.value;
            } else {
                sums[labels] = s.value;
            }
        }
        for (const auto& kv : buckets) {
            const auto& b = kv.second;
            for (std::size_t k = 1; k < b.size(); ++k) {
                if (!(b[k].first > b[k - 1].first)) return fail(f.name + ": le not ascending", 0);
                if (b[k].second < b[k - 1].second) return fail(f.name + ": buckets not cumulative", 0);
            }
            if (b.empty() || !std::isinf(b.back().first)) return fail(f.name + ": no +Inf bucket", 0);
            if (!counts.count(kv.first) || counts[kv.first] != b.back().second)
                return fail(f.name + ": _count differs from the +Inf bucket", 0);
            if (!sums.count(kv.first)) return fail(f.name + ": no _sum", 0);
        }
        if (counts.size() != buckets.size()) return fail(f.name + ": _count without buckets", 0);
    }
    return r;
}

} // namespace prometheus_check

#endif
