import ArgumentParser
import FoundationEssentials
import Glibc

/// `cluster bench report`: reads the JSON lines `make bench` collected (this project's and
/// `uvmesh`'s, run in pairs), prints each pair's medians and their ratio, and writes SVG plots:
/// CPU and latency against N for both programs, and the failover time distribution per mode.
struct BenchReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Summarise `make bench` results and draw them as SVG.")

    @Argument(help: "The results: one JSON object per line.") var results: String
    @Option(help: "Folder for the SVG plots.") var plots: String = "docs/bench"
    @Option(help: "Failover samples, MODE=FILE (one time in ms per line), repeatable.") var samples: [String] = []

    /// A line of the results: the JSON object's keys and their values.
    typealias Row = [String: ResultValue]

    /// A value of a results line: the benchmarks print numbers, strings and booleans.
    enum ResultValue: Decodable {
        case number(Double)
        case string(String)
        case bool(Bool)
        /// null, an array or an object: never read.
        case other

        init(from decoder: any Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let b = try? value.decode(Bool.self) {
                self = .bool(b)
            } else if let n = try? value.decode(Double.self) {
                self = .number(n)
            } else if let s = try? value.decode(String.self) {
                self = .string(s)
            } else {
                self = .other
            }
        }

        var string: String? { if case .string(let s) = self { s } else { nil } }
        var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
    }

    func run() throws {
        let text = try String(contentsOfFile: results, encoding: .utf8)
        let decoder = JSONDecoder()
        let rows: [Row] = text.split(separator: "\n").compactMap { try? decoder.decode(Row.self, from: Data($0.utf8)) }
        try FileManager.default.createDirectory(atPath: plots, withIntermediateDirectories: true)
        var out = ""
        // Steady pairs: by N at each interval.
        func number(_ row: Row, _ key: String) -> Double? { if case .number(let n) = row[key] { n } else { nil } }
        func median(_ values: [Double]) -> Double {
            let s = values.sorted()
            return s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        }
        let steady = rows.filter {
            ($0["mode"]?.string == "steady" && $0["keyed"]?.bool != true) || ($0["impl"]?.string == "c-libuv" && $0["interval_ms"] != nil)
        }
        let intervals = Set(steady.compactMap { number($0, "interval_ms") }).sorted()
        var cpuSeries: [String: [(Double, Double)]] = [:]
        var rttSeries: [String: [(Double, Double)]] = [:]
        for interval in intervals {
            let atInterval = steady.filter { number($0, "interval_ms") == interval }
            // Pairs only: a run of this project's alone (the memory baseline at N = 2) has no C line.
            let ns = Set(atInterval.compactMap { number($0, "nodes") }).sorted().filter { n in
                atInterval.contains { number($0, "nodes") == n && $0["impl"]?.string == "c-libuv" }
            }
            out += "steady, heartbeat every \(Int(interval)) ms, one loop thread: medians of the runs\n"
            out += "    N  swift cpu%  C cpu%  ratio  swift µs/hb  C µs/rt  swift rtt p50/p99 µs   C rtt p50/p99 µs\n"
            for n in ns {
                let swift = atInterval.filter { number($0, "nodes") == n && $0["impl"]?.string == "swift-cluster" }
                let c = atInterval.filter { number($0, "nodes") == n && $0["impl"]?.string == "c-libuv" }
                let sCPU = median(swift.compactMap { number($0, "cpu_pct") })
                let cCPU = median(c.compactMap { number($0, "cpu_pct") })
                let sPer = median(swift.compactMap { number($0, "cpu_us_per_heartbeat") })
                let cPer = median(c.compactMap { number($0, "cpu_us_per_roundtrip") })
                let sP50 = median(swift.compactMap { number($0, "rtt_p50_us") })
                let sP99 = median(swift.compactMap { number($0, "rtt_p99_us") })
                let cP50 = median(c.compactMap { number($0, "rtt_p50_us") })
                let cP99 = median(c.compactMap { number($0, "rtt_p99_us") })
                out += "  \(num(n, 3, 0))  \(num(sCPU, 10, 1))  \(num(cCPU, 6, 1))  \(num(sCPU / cCPU, 5, 2))  \(num(sPer, 11, 2))"
                    + "  \(num(cPer, 7, 2))  \(num(sP50, 9, 0)) / \(num(sP99, -9, 0))  \(num(cP50, 7, 0)) / \(num(cP99, -7, 0))\n"
                if interval == intervals.last {
                    cpuSeries["swift-cluster", default: []].append((n, sCPU))
                    cpuSeries["uvmesh (C)", default: []].append((n, cCPU))
                    rttSeries["swift-cluster", default: []].append((n, sP50 / 1000))
                    rttSeries["uvmesh (C)", default: []].append((n, cP50 / 1000))
                }
            }
        }
        if let interval = intervals.last {
            try Plot.lines(title: "CPU of a cluster at rest (heartbeat every \(Int(interval)) ms, one loop)", x: "nodes", y: "% of a core",
                           series: cpuSeries).write(toFile: plots + "/steady-cpu.svg", atomically: true, encoding: .utf8)
            try Plot.lines(title: "Probe round trip p50 (heartbeat every \(Int(interval)) ms)", x: "nodes", y: "ms",
                           series: rttSeries).write(toFile: plots + "/steady-rtt.svg", atomically: true, encoding: .utf8)
        }
        // The cluster key's cost: each keyed run against the run without a key just before it at
        // the same N and interval (`make bench` runs them in alternating pairs: the machine's speed
        // drifts from minute to minute), the median of those ratios; and the tags alone.
        var keyedPairs: [[Double]: [(plain: Double, keyed: Double)]] = [:]
        var lastPlain: [[Double]: Double] = [:]
        for row in rows where row["mode"]?.string == "steady" && row["impl"]?.string == "swift-cluster" {
            guard let n = number(row, "nodes"), let i = number(row, "interval_ms"), let us = number(row, "cpu_us_per_heartbeat") else { continue }
            if row["keyed"]?.bool == true {
                if let plain = lastPlain.removeValue(forKey: [n, i]) { keyedPairs[[n, i], default: []].append((plain, us)) }
            } else {
                lastPlain[[n, i]] = us
            }
        }
        if !keyedPairs.isEmpty {
            out += "\nsteady with a cluster key (every frame tagged): alternating pairs, medians\n"
            out += "    N  interval ms  pairs  plain µs/hb  keyed µs/hb  keyed/plain (each pair)\n"
        }
        for key in keyedPairs.keys.sorted(by: { ($0[1], $0[0]) < ($1[1], $1[0]) }) {
            let pairs = keyedPairs[key]!
            let ratios = pairs.map { $0.keyed / $0.plain }
            out += "  \(num(key[0], 3, 0))  \(num(key[1], 11, 0))  \(num(Double(pairs.count), 5, 0))  \(num(median(pairs.map(\.plain)), 11, 2))"
                + "  \(num(median(pairs.map(\.keyed)), 11, 2))  \(num(median(ratios), 11, 3)) (\(ratios.map { format($0, 3) }.joined(separator: ", ")))\n"
        }
        for row in rows where row["mode"]?.string == "tags" {
            out += "  tags alone (\(format(number(row, "links") ?? 0, 0)) links): frames (HMAC-SHA256) seal \(format(number(row, "seal_ns") ?? 0, 0)) ns,"
                + " open \(format(number(row, "open_ns") ?? 0, 0)) ns, \(format(number(row, "tag_ns_per_heartbeat") ?? 0, 0)) ns per heartbeat\n"
            if let seal = number(row, "datagram_seal_ns"), let open = number(row, "datagram_open_ns") {
                out += "  datagrams (AES-256-GCM) seal \(format(seal, 0)) ns, open \(format(open, 0)) ns,"
                    + " \(format(seal + open, 0)) ns per heartbeat\n"
            }
        }
        // Mesh pairs.
        let mesh = rows.filter { $0["mode"]?.string == "mesh" || ($0["impl"]?.string == "c-libuv" && $0["interval_ms"] == nil) }
        let meshKeys = Set(mesh.compactMap { row -> String? in
            guard let n = number(row, "nodes"), let k = number(row, "inflight"), let t = number(row, "threads") else { return nil }
            return "\(Int(n))/\(Int(k))/\(Int(t))"
        }).sorted()
        if !meshKeys.isEmpty {
            out += "\nmesh, flat out: medians of the runs\n"
            out += "  N/K/threads  swift rt/cpu-s  C rt/cpu-s  ratio  swift rtt p50 µs  C rtt p50 µs\n"
        }
        for key in meshKeys {
            let parts = key.split(separator: "/").compactMap { Double($0) }
            let match = mesh.filter { number($0, "nodes") == parts[0] && number($0, "inflight") == parts[1] && number($0, "threads") == parts[2] }
            let s = median(match.filter { $0["impl"]?.string == "swift-cluster" }.compactMap { number($0, "roundtrips_per_cpu_s") })
            let c = median(match.filter { $0["impl"]?.string == "c-libuv" }.compactMap { number($0, "roundtrips_per_cpu_s") })
            let sr = median(match.filter { $0["impl"]?.string == "swift-cluster" }.compactMap { number($0, "rtt_p50_us") })
            let cr = median(match.filter { $0["impl"]?.string == "c-libuv" }.compactMap { number($0, "rtt_p50_us") })
            out += "  \(key.padded(to: 11))  \(num(s, 14, 0))  \(num(c, 10, 0))  \(num(s / c, 5, 2))  \(num(sr, 16, 0))  \(num(cr, 12, 0))\n"
        }
        // Two loop threads against one: throughput (round trips a second), both programs.
        for key in meshKeys where key.hasSuffix("/2") {
            let parts = key.split(separator: "/").compactMap { Double($0) }
            func throughput(_ impl: String, threads: Double) -> Double {
                median(mesh.filter {
                    number($0, "nodes") == parts[0] && number($0, "inflight") == parts[1] && number($0, "threads") == threads
                        && $0["impl"]?.string == impl
                }.compactMap { number($0, "roundtrips_per_s") })
            }
            let s1 = throughput("swift-cluster", threads: 1), s2 = throughput("swift-cluster", threads: 2)
            let c1 = throughput("c-libuv", threads: 1), c2 = throughput("c-libuv", threads: 2)
            out += "  \(Int(parts[0]))/\(Int(parts[1])): two threads carry \(format(s2 / s1, 2)) x one thread's round trips a second"
                + " (uvmesh \(format(c2 / c1, 2)) x)\n"
        }
        // Failover and join lines as they are.
        let others = rows.filter { ($0["mode"]?.string ?? "").hasPrefix("failover") || $0["mode"]?.string == "join" }
        if !others.isEmpty { out += "\nfailover and join\n" }
        for row in others {
            let ratios = number(row, "p50_ratio").map { "  (p50 \(format($0, 2)) T, p99 \(format(number(row, "p99_ratio") ?? 0, 2)) T)" } ?? ""
            out += "  \((row["mode"]?.string ?? "?").padded(to: 16)) trials \(num(number(row, "trials") ?? 0, 3, 0))"
                + "  p50 \(num(number(row, "p50_ms") ?? 0, 7, 1)) ms  p99 \(num(number(row, "p99_ms") ?? 0, 7, 1)) ms"
                + "  max \(num(number(row, "max_ms") ?? 0, 7, 1)) ms\(ratios)\n"
        }
        // Memory per node: the process at 64 nodes against the process at 2 (its baseline), both
        // on one loop, steady at 100 ms, medians of the runs (peak RSS).
        func steadyRSS(_ n: Double) -> Double {
            median(rows.filter {
                $0["mode"]?.string == "steady" && $0["keyed"]?.bool != true && number($0, "nodes") == n && number($0, "interval_ms") == 100
            }.compactMap { number($0, "rss_kb") })
        }
        let rss2 = steadyRSS(2), rss64 = steadyRSS(64)
        if rss2.isFinite, rss64.isFinite {
            out += "\nmemory: 64 nodes in one process \(format(rss64 / 1024, 1)) MiB, 2 nodes \(format(rss2 / 1024, 1)) MiB:"
                + " \(format((rss64 - rss2) / 62, 0)) KiB per node beyond the baseline\n"
        }
        // Agent processes' memory (target: under 12 MiB resident each).
        for row in rows where row["mode"]?.string == "agents" && row["impl"]?.string == "swift-cluster" && number(row, "nodes") == 5 {
            out += "\nagents: \(Int(number(row, "nodes") ?? 0)) processes, resident \(format((number(row, "rss_kb_median") ?? 0) / 1024, 1)) MiB median,"
                + " \(format((number(row, "rss_kb_max") ?? 0) / 1024, 1)) MiB max (start-up code let go: \(format((number(row, "released_kb_median") ?? 0) / 1024, 1)) MiB)\n"
        }
        // Agent processes at rest beside Serf's (`bench agents` and `bench serf` in the same run):
        // total CPU of all the agents, medians, and the ratio this / Serf (issue 17's target at
        // 64: 1 or below).
        let atRest = rows.filter { $0["mode"]?.string == "agents" && number($0, "cpu_pct_total") != nil }
        let restCounts = Set(atRest.compactMap { number($0, "nodes") }).sorted().filter { n in
            atRest.contains { number($0, "nodes") == n && $0["impl"]?.string == "serf" }
        }
        if !restCounts.isEmpty {
            out += "\nagent processes at rest beside Serf (total CPU of all agents, % of a core; medians; ratio this / Serf)\n"
            out += "    N  Serf cpu%  gossip cpu%  ratio  mesh cpu%  ratio  Serf RSS MiB  gossip RSS MiB (medians per agent)\n"
        }
        for n in restCounts {
            func restMedian(_ impl: String, _ membership: String, _ key: String) -> Double {
                let match = atRest.filter {
                    number($0, "nodes") == n && $0["impl"]?.string == impl && $0["membership"]?.string == membership
                        && (impl == "serf" || membership == "mesh" || number($0, "probe_interval_ms") == 1000)
                }
                return median(match.compactMap { number($0, key) })
            }
            let serf = restMedian("serf", "serf", "cpu_pct_total")
            let gossip = restMedian("swift-cluster", "gossip", "cpu_pct_total")
            let mesh = restMedian("swift-cluster", "mesh", "cpu_pct_total")
            out += "  \(num(n, 3, 0))  \(num(serf, 9, 2))  \(num(gossip, 11, 2))  \(num(gossip / serf, 5, 2))  \(num(mesh, 9, 2))"
                + "  \(num(mesh / serf, 5, 2))  \(num(restMedian("serf", "serf", "rss_kb_median") / 1024, 12, 1))"
                + "  \(num(restMedian("swift-cluster", "gossip", "rss_kb_median") / 1024, 14, 1))\n"
        }
        if !restCounts.isEmpty { out += "  (gossip: probe every 1 s, as Serf's LAN profile; 3 voters linked, heartbeat 100 ms)\n" }
        // The gossip membership beside memberlist, per member count: ratios this / memberlist
        // (below 1: this costs less, or detects sooner).
        let memberCounts = Set(rows.filter { $0["impl"]?.string == "swift-cluster" && $0["scenario"]?.string?.contains(",") == true || $0["impl"]?.string == "go-memberlist" }
            .compactMap { number($0, "nodes") }).sorted()
        var membersOut = ""
        for n in memberCounts {
            let ours = rows.filter { $0["impl"]?.string == "swift-cluster" && number($0, "nodes") == n && number($0, "convergence_ms") != nil }
            let theirs = rows.filter { $0["impl"]?.string == "go-memberlist" && number($0, "nodes") == n }
            guard !ours.isEmpty else { continue }
            func pair(_ key: String, _ theirKey: String? = nil) -> String {
                let a = median(ours.compactMap { number($0, key) })
                let b = median(theirs.compactMap { number($0, theirKey ?? key) })
                guard a.isFinite else { return "\(key) -" }
                return "\(key) \(format(a, 0))" + (b.isFinite && b > 0 ? " vs \(format(b, 0)) (\(format(a / b, 2)) x)" : "")
            }
            membersOut += "  N \(Int(n)): " + [
                pair("cpu_us_per_member_s"), pair("bytes_per_member_s"), pair("rss_kib_per_member"), pair("convergence_ms"),
                pair("join_p99_ms"), pair("detect_p50_ms"), pair("false_positives"),
            ].joined(separator: "; ") + "\n"
        }
        if !membersOut.isEmpty { out += "\ngossip membership, this vs memberlist (medians)\n" + membersOut }
        // Five agents beside five etcd members (`cluster bench etcd`): ratios this / etcd (below
        // 1: this is faster, or costs less).
        let pairs = rows.filter { $0["mode"]?.string == "etcd-pair" }
        let ours = pairs.filter { $0["impl"]?.string == "swift-cluster" }
        let etcd = pairs.filter { $0["impl"]?.string == "etcd" }
        if !ours.isEmpty {
            out += "\nagents beside etcd (\(Int(number(ours[0], "nodes") ?? 0)) members, heartbeat \(Int(number(ours[0], "heartbeat_ms") ?? 0)) ms,"
                + " election timeout \(Int(number(ours[0], "election_timeout_ms") ?? 0)) ms; medians)\n"
            if etcd.isEmpty { out += "  (no etcd line: install it with `\(BenchEtcd.installHint)`)\n" }
            for (key, label) in [("handover_p50_ms", "handover p50 ms"), ("handover_p99_ms", "handover p99 ms"),
                                 ("handover_writes_median", "durable writes per handover"),
                                 ("handover_target_writes_median", "the target's writes until it leads"),
                                 ("crash_p50_ms", "leader killed, new leader p50 ms"), ("crash_p99_ms", "leader killed, p99 ms"),
                                 ("rest_cpu_pct", "CPU at rest, % of a core")] {
                let a = median(ours.compactMap { number($0, key) })
                guard a.isFinite else { continue }
                let b = median(etcd.compactMap { number($0, key) })
                out += "  \(label.padded(to: 36)) \(num(a, 8, 2))" + (b.isFinite ? "  etcd \(num(b, 8, 2))" + (b > 0 ? "  ratio \(format(a / b, 2))" : "") : "") + "\n"
            }
        }
        var distributions: [String: [Double]] = [:]
        for spec in samples {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let body = try? String(contentsOfFile: parts[1], encoding: .utf8) else { continue }
            distributions[parts[0]] = body.split(separator: "\n").compactMap { Double($0) }
        }
        if !distributions.isEmpty {
            try Plot.cdf(title: "Failover time, from the fault until every survivor names the new primary", x: "ms",
                         series: distributions).write(toFile: plots + "/failover.svg", atomically: true, encoding: .utf8)
        }
        writeOut(out)
    }
}

/// Small SVG line charts, written by hand: enough for the README's plots.
enum Plot {
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]

    static func lines(title: String, x: String, y: String, series: [String: [(Double, Double)]]) -> String {
        let points = series.values.flatMap { $0 }.filter { $0.1.isFinite }
        let xMax = max(points.map(\.0).max() ?? 1, 1)
        let yMax = niceCeiling(points.map(\.1).max() ?? 1)
        return chart(title: title, x: x, y: y, xMax: xMax, yMax: yMax, series: series.mapValues { $0.filter { $0.1.isFinite } }, markers: true)
    }

    /// Cumulative distributions: for each series, the share of trials done by each time.
    static func cdf(title: String, x: String, series: [String: [Double]]) -> String {
        var curves: [String: [(Double, Double)]] = [:]
        for (name, values) in series {
            let sorted = values.sorted()
            curves[name] = sorted.enumerated().map { ($0.element, Double($0.offset + 1) / Double(sorted.count) * 100) }
        }
        let xMax = niceCeiling(series.values.flatMap { $0 }.max() ?? 1)
        return chart(title: title, x: x, y: "% of trials done", xMax: xMax, yMax: 100, series: curves, markers: false)
    }

    private static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(v)))
        for step in [1.0, 2, 2.5, 5, 10] where step * magnitude >= v { return step * magnitude }
        return 10 * magnitude
    }

    private static func chart(title: String, x: String, y: String, xMax: Double, yMax: Double,
                              series: [String: [(Double, Double)]], markers: Bool) -> String {
        let w = 640.0, h = 400.0, left = 60.0, right = 20.0, top = 40.0, bottom = 50.0
        func px(_ v: Double) -> Double { left + v / xMax * (w - left - right) }
        func py(_ v: Double) -> Double { h - bottom - v / yMax * (h - top - bottom) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">\(escape(title))</text>\n"
        for i in 0...5 {
            let yv = yMax * Double(i) / 5, xv = xMax * Double(i) / 5
            svg += "<line x1=\"\(left)\" y1=\"\(py(yv))\" x2=\"\(w - right)\" y2=\"\(py(yv))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(left - 6)\" y=\"\(py(yv) + 4)\" text-anchor=\"end\">\(label(yv))</text>\n"
            svg += "<text x=\"\(px(xv))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(label(xv))</text>\n"
        }
        svg += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
        svg += "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 12)\" text-anchor=\"middle\">\(escape(x))</text>\n"
        svg += "<text x=\"14\" y=\"\((top + h - bottom) / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 \((top + h - bottom) / 2))\">\(escape(y))</text>\n"
        for (i, name) in series.keys.sorted().enumerated() {
            let color = colors[i % colors.count]
            let pts = series[name]!.sorted { $0.0 < $1.0 }
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"" + pts.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ") + "\"/>\n"
            if markers { for p in pts { svg += "<circle cx=\"\(px(p.0))\" cy=\"\(py(p.1))\" r=\"3\" fill=\"\(color)\"/>\n" } }
            svg += "<text x=\"\(left + 12)\" y=\"\(top + 16 + Double(i) * 16)\" fill=\"\(color)\">\(escape(name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    private static func label(_ v: Double) -> String { v >= 10 || v == 0 ? format(v, 0) : format(v, 1) }

    private static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            default: out.append(c)
            }
        }
        return out
    }
}

/// `value` as `printf("%<width>.<decimals>f")` writes it: right-aligned in `width` characters,
/// left-aligned in `-width` when `width` is negative.
private func num(_ value: Double, _ width: Int, _ decimals: Int) -> String {
    width < 0 ? format(value, decimals).padded(to: -width) : format(value, decimals).padded(left: width)
}
