import SluiceSpec
import Testing
@testable import SluiceController

/// The parts of the HAProxy router that read HAProxy's answers, on answers a real HAProxy 2.6 gave
/// (the router against a running HAProxy is `HAProxyEndToEndTests`).
@Suite("HAProxy router: reading HAProxy's answers")
struct HAProxyRouterTests {
    static let serversState = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 scorer 1 v1 127.0.0.1 2 0 100 100 2 1 0 2 0 0 0 0 - 19001 - 0 0 - - 0\n3 scorer 2 v2 127.0.0.1 2 0 0 0 2 1 0 2 0 0 0 0 - 19002 - 0 0 - - 0\n\n"

    static let stat = """
        # pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,
        scorer,v1,0,0,0,1,,120,0,0,,0,,3,1,0,0,UP,100,1,0,0,0,5,0,,1,3,1,,120,,2,0,,1,,,,0,110,0,2,5,0,
        scorer,BACKEND,0,0,0,1,,120,0,0,,0,,3,1,0,0,UP,100,1,0,0,0,5,0,,1,3,0,,120,,1,0,,1,,,,0,110,0,2,5,0,

        """

    @Test("show servers state: one row per server with its user weight")
    func serversState() {
        let rows = HAProxyRuntime.table(Self.serversState, separator: " ")
        #expect(rows.count == 2)
        #expect(rows.map { $0["srv_name"] } == ["v1", "v2"])
        #expect(rows.map { $0["srv_uweight"] } == ["100", "0"])
        #expect(rows.allSatisfy { $0["be_name"] == "scorer" })
    }

    @Test("show stat: a server's answers between two readings, its connect and response errors counted as 5xx")
    func statWindow() throws {
        let rows = HAProxyRuntime.table(Self.stat, separator: ",")
        let v1 = try #require(rows.first { $0["svname"] == "v1" })
        let now = HAProxyRouter.counters(v1)
        #expect(now == ["hrsp_1xx": 0, "hrsp_2xx": 110, "hrsp_3xx": 0, "hrsp_4xx": 2, "hrsp_5xx": 5, "hrsp_other": 0, "econ": 3, "eresp": 1])
        let window = HAProxyRouter.window(since: ["hrsp_2xx": 100, "hrsp_5xx": 1, "econ": 1], now: now)
        #expect(window.statusClasses[2] == 10 && window.statusClasses[4] == 2)
        #expect(window.statusClasses[5] == 4 + 2 + 1, "4 more 5xx, 2 more connect errors, 1 response error")
        #expect(window.upstreamErrors[.connect] == 2 && window.upstreamErrors[.reset] == 1)
        #expect(window.requests == 19)
        #expect(HAProxyRouter.window(since: now, now: ["hrsp_2xx": 0]).requests == 0, "counters that went back (a reload) add nothing")
    }

    @Test("runtime API addresses: HOST:PORT or unix:PATH")
    func addresses() {
        #expect(HAProxyRuntime("127.0.0.1:9999")?.address == .tcp(host: "127.0.0.1", port: 9999))
        #expect(HAProxyRuntime("unix:/run/haproxy/admin.sock")?.address == .unix(path: "/run/haproxy/admin.sock"))
        #expect(HAProxyRuntime("/run/haproxy/admin.sock")?.address == .unix(path: "/run/haproxy/admin.sock"))
        #expect(HAProxyRuntime("nowhere") == nil && HAProxyRuntime("host:0") == nil && HAProxyRuntime("unix:") == nil)
    }
}
