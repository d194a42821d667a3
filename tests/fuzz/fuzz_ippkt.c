/* fuzz_ippkt.c — libFuzzer target for the L3 tunnel's packet logic (proto/ippkt.c): what a TUN
 * device or the bridge's datagram lane may hand over. The input's first byte is a control
 * byte: bit 0 sets the IPv4 header checksum and bit 1 the IPv4 total length or IPv6 payload
 * length right before parsing (so that mutations get past those checks), bits 2-4 pick the
 * MSS limit and the MTU, bits 5-7 the answer buffer's size. The rest is the packet; it is also
 * read as text (up to its first NUL) by the address, prefix and rule parsers.
 *
 * Properties: an accepted packet's offsets are within it; the rules match a rule or none; the
 * MSS clamp changes nothing unless it says so, and what it changes still parses the same and
 * keeps a right checksum right; a too-big answer parses back as an ICMP error to the packet's
 * source with right checksums, within its size limits and the buffer; text that parses prints
 * back to text that parses to the same thing; pool indexes and addresses map both ways. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ippkt.h"

static void put16(uint8_t *p, size_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void check_text(const uint8_t *data, size_t size, const gp_ip_pkt *pkt, int pkt_ok) {
    char s[128];
    size_t n = 0;
    while (n < size && n < sizeof s - 1 && data[n])
        n++;
    memcpy(s, data, n);
    s[n] = '\0';
    char err[256], txt[GP_TUN_RULE_STRLEN];

    gp_ip_addr a, b;
    if (gp_ip_addr_parse(s, n, &a) == 0) {
        char t[GP_IP_ADDR_STRLEN];
        gp_ip_addr_format(&a, t);
        if (strlen(t) >= GP_IP_ADDR_STRLEN || gp_ip_addr_parse(t, strlen(t), &b) != 0 ||
            !gp_ip_addr_eq(&a, &b))
            abort();
    }
    /* a list of prefixes: what parses writes back to what parses the same */
    gp_cidr list[8], list2[8];
    size_t nl = 0, nl2 = 0;
    if (gp_cidr_list_parse(s, n, list, 8, &nl, err, sizeof err) == 0) {
        char lt[8 * GP_CIDR_STRLEN + 8];
        int w = gp_cidr_list_format(list, nl, ",", lt, sizeof lt);
        if (w < 0 || gp_cidr_list_parse(lt, (size_t)w, list2, 8, &nl2, NULL, 0) != 0 || nl2 != nl)
            abort();
        for (size_t k = 0; k < nl; k++)
            if (list[k].len != list2[k].len || !gp_ip_addr_eq(&list[k].addr, &list2[k].addr))
                abort();
    }
    gp_cidr c, c2;
    err[0] = '\0';
    if (gp_cidr_parse(s, &c, err, sizeof err) == 0) {
        char t[GP_CIDR_STRLEN];
        gp_cidr_format(&c, t);
        if (gp_cidr_parse(t, &c2, NULL, 0) != 0 || c2.len != c.len ||
            !gp_ip_addr_eq(&c.addr, &c2.addr) || !gp_cidr_contains(&c, &c.addr))
            abort();
        /* pool: an index from the input, its address and back; the packet's addresses */
        uint64_t i = 0, j;
        for (size_t k = 0; k < 8 && k < size; k++)
            i = i << 8 | data[size - 1 - k];
        uint64_t sz = gp_pool_size(&c);
        gp_ip_addr pa;
        if (sz == 0)
            abort();
        for (int round = 0; round < 3; round++) {
            uint64_t idx = round == 0 ? i : round == 1 ? i % sz : sz - 1;
            int rc = gp_pool_addr(&c, idx, &pa);
            if ((rc == 0) != (idx < sz))
                abort();
            if (rc == 0 &&
                (!gp_cidr_contains(&c, &pa) || gp_pool_index(&c, &pa, &j) != 0 || j != idx))
                abort();
        }
        if (pkt_ok && gp_pool_index(&c, &pkt->dst, &j) == 0 &&
            (j >= sz || gp_pool_addr(&c, j, &pa) != 0 || !gp_ip_addr_eq(&pa, &pkt->dst)))
            abort();
    } else if (!err[0]) {
        abort();
    }
    gp_tun_rule r, r2;
    err[0] = '\0';
    if (gp_tun_rule_parse(s, &r, err, sizeof err) == 0) {
        gp_tun_rule_format(&r, txt);
        if (strlen(txt) >= GP_TUN_RULE_STRLEN || gp_tun_rule_parse(txt, &r2, NULL, 0) != 0 ||
            memcmp(&r, &r2, sizeof r) != 0)
            abort();
        if (pkt_ok) {
            int m = gp_tun_rules_match(&r, 1, pkt);
            if (m != 0 && m != -1)
                abort();
        }
    } else if (!err[0]) {
        abort();
    }
    gp_tun_rule rs[4];
    size_t nr = 0;
    if (gp_tun_rules_parse(s, rs, 4, &nr, NULL, 0) == 0 && (nr == 0 || nr > 4))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t p[70000], out[2000], out2[2000];
    if (size < 1 || size - 1 > sizeof p)
        return 0;
    uint8_t ctl = data[0];
    size_t n = size - 1;
    memcpy(p, data + 1, n);
    if (n >= 20 && (p[0] >> 4) == 4) {
        if ((ctl & 2) && n <= 65535)
            put16(p + 2, n);
        if (ctl & 1) {
            size_t ihl = (size_t)(p[0] & 15) * 4;
            if (ihl >= 20 && ihl <= n) {
                p[10] = p[11] = 0;
                put16(p + 10, gp_csum_fold(gp_csum_add(0, p, ihl)));
            }
        }
    } else if (n >= 40 && (p[0] >> 4) == 6 && (ctl & 2) && n - 40 <= 65535) {
        put16(p + 4, n - 40);
    }

    gp_ip_pkt pkt;
    gp_ip_drop d = gp_ip_parse(p, n, &pkt);
    const char *name = gp_ip_drop_name(d);
    if (!name || !name[0])
        abort();
    int ok = d == GP_IPD_OK;
    if (ok) {
        if (pkt.len != n || pkt.l4_off > n || pkt.hdr_len > n || pkt.l4_off < pkt.hdr_len ||
            (pkt.version != 4 && pkt.version != 6) || pkt.src.family != pkt.version ||
            pkt.dst.family != pkt.version)
            abort();
        if ((pkt.flags & GP_IPF_L4) && pkt.proto == 6 && n - pkt.l4_off < 20)
            abort();
        if ((pkt.flags & GP_IPF_L4) && pkt.proto != 6 && n - pkt.l4_off < 8)
            abort();
        if ((pkt.flags & GP_IPF_FIRST_FRAG) && !(pkt.flags & GP_IPF_FRAGMENT))
            abort();
        if ((pkt.flags & GP_IPF_FRAGMENT) && !(pkt.flags & GP_IPF_FIRST_FRAG) &&
            (pkt.flags & GP_IPF_L4))
            abort();

        /* MSS clamp */
        static const uint16_t limits[] = {536, 1220, 1360, 1400, 1460, 0, 1, 65535};
        uint16_t lim = limits[(ctl >> 2) & 7];
        int before = gp_l4_csum_ok(p, n, &pkt);
        static uint8_t copy[70000];
        memcpy(copy, p, n);
        int rc = gp_tcp_mss_clamp(p, n, &pkt, lim);
        if (rc < -1 || rc > 1)
            abort();
        if (rc != 1 && memcmp(copy, p, n) != 0)
            abort();
        if (rc == 1) {
            gp_ip_pkt again;
            if (gp_ip_parse(p, n, &again) != GP_IPD_OK || again.dport != pkt.dport ||
                again.l4_off != pkt.l4_off || gp_l4_csum_ok(p, n, &again) != before)
                abort();
            /* only the MSS bytes and the checksum changed */
            for (size_t k = 0; k < n; k++)
                if (p[k] != copy[k] &&
                    (k < pkt.l4_off + 16 || (k >= pkt.l4_off + 18 && k < pkt.l4_off + 22)))
                    abort();
            if (gp_tcp_mss_clamp(p, n, &pkt, lim) != 0)
                abort(); /* done once, nothing left */
        }

        /* ICMP too big */
        static const uint32_t mtus[] = {68, 576, 1280, 1400, 1500, 100, 9000, 65535};
        uint32_t mtu = mtus[(ctl >> 2) & 7];
        size_t cap = (size_t)((ctl >> 5) + 1) * 200; /* 200..1600 */
        gp_ip_addr from = {.family = pkt.version, .a = {10, 0, 0, 1}};
        size_t on = 12345;
        gp_icmp_tb tb = gp_icmp_too_big(p, n, &pkt, &from, mtu, out, cap, &on);
        const char *tn = gp_icmp_tb_name(tb);
        if (!tn || !tn[0] || (unsigned)tb >= GP_TB_COUNT)
            abort();
        if (tb != GP_TB_BUILT && on != 0)
            abort();
        if (tb == GP_TB_BUILT) {
            gp_ip_pkt ans;
            if (on > cap || on > (pkt.version == 4 ? GP_ICMP_TB_V4_MAX : GP_ICMP_TB_V6_MAX) ||
                gp_ip_parse(out, on, &ans) != GP_IPD_OK || ans.version != pkt.version ||
                !(ans.flags & GP_IPF_ICMP_ERROR) || !gp_ip_addr_eq(&ans.dst, &pkt.src) ||
                !gp_ip_addr_eq(&ans.src, &from) || gp_l4_csum_ok(out, on, &ans) != 1 ||
                memcmp(out + ans.l4_off + 8, p, on - ans.l4_off - 8) != 0)
                abort();
            size_t on2;
            if (gp_icmp_too_big(out, on, &ans, &from, mtu, out2, sizeof out2, &on2) !=
                GP_TB_ICMP_ERROR)
                abort(); /* never an error about an error */
        }
    }
    check_text(data + 1, n, &pkt, ok);
    return 0;
}
