import { ConnectionGate, groupOf, type GateLimits } from '../../lib/admission/gate';

const limits = (changes: Partial<GateLimits> = {}): GateLimits => ({
  maxClients: 0,
  maxConnectionsPerAddress: 0,
  ipv4Prefix: 32,
  ipv6Prefix: 64,
  ...changes,
});

describe('groupOf', () => {
  describe('IPv4', () => {
    it('groups by the whole address at /32', () => {
      const at32 = limits();
      expect(groupOf('10.1.2.3', at32)).toBe(groupOf('10.1.2.3', at32));
      expect(groupOf('10.1.2.3', at32)).not.toBe(groupOf('10.1.2.4', at32));
    });

    it('groups a /24 together and tells /24s apart', () => {
      const at24 = limits({ ipv4Prefix: 24 });
      expect(groupOf('10.1.2.3', at24)).toBe(groupOf('10.1.2.250', at24));
      expect(groupOf('10.1.2.3', at24)).not.toBe(groupOf('10.1.3.3', at24));
      expect(groupOf('10.1.2.3', at24)).not.toBe(groupOf('11.1.2.3', at24));
    });

    it('names the prefix length in the group, so /24 and /32 groups never collide', () => {
      expect(groupOf('10.1.2.0', limits({ ipv4Prefix: 24 }))).not.toBe(groupOf('10.1.2.0', limits()));
      expect(groupOf('10.1.2.3', limits({ ipv4Prefix: 24 }))).toMatch(/\/24$/);
    });

    it('puts every address in one group at /0, and handles the top of the range', () => {
      const at0 = limits({ ipv4Prefix: 0 });
      expect(groupOf('0.0.0.0', at0)).toBe(groupOf('255.255.255.255', at0));
      expect(groupOf('255.255.255.255', limits())).not.toBe(groupOf('255.255.255.254', limits()));
    });
  });

  describe('IPv6', () => {
    const at64 = limits();
    const at48 = limits({ ipv6Prefix: 48 });
    const at128 = limits({ ipv6Prefix: 128 });

    it('groups a /64 together and tells /64s apart', () => {
      expect(groupOf('2001:db8:1:2::1', at64)).toBe(groupOf('2001:db8:1:2:ffff:ffff:ffff:ffff', at64));
      expect(groupOf('2001:db8:1:2::1', at64)).not.toBe(groupOf('2001:db8:1:3::1', at64));
    });

    it('groups a /48 together and tells /48s apart', () => {
      expect(groupOf('2001:db8:1:2::1', at48)).toBe(groupOf('2001:db8:1:ffff::1', at48));
      expect(groupOf('2001:db8:1:2::1', at48)).not.toBe(groupOf('2001:db8:2:2::1', at48));
    });

    it('masks within a group when the prefix is not a multiple of 16', () => {
      const at56 = limits({ ipv6Prefix: 56 });
      expect(groupOf('2001:db8:1:2a00::1', at56)).toBe(groupOf('2001:db8:1:2aff::1', at56));
      expect(groupOf('2001:db8:1:2a00::1', at56)).not.toBe(groupOf('2001:db8:1:2b00::1', at56));
    });

    it('expands :: wherever it stands, and leading zeros and case do not matter', () => {
      const full = groupOf('2001:0db8:0000:0000:0000:0000:0000:0001', at128);
      expect(groupOf('2001:db8::1', at128)).toBe(full);
      expect(groupOf('2001:DB8:0:0::1', at128)).toBe(full);
      expect(groupOf('::1', at128)).toBe(groupOf('0:0:0:0:0:0:0:1', at128));
      expect(groupOf('1::', at128)).toBe(groupOf('1:0:0:0:0:0:0:0', at128));
      expect(groupOf('::', at128)).toBe(groupOf('0:0:0:0:0:0:0:0', at128));
      expect(groupOf('1:2:3:4:5:6:7::', at128)).toBe(groupOf('1:2:3:4:5:6:7:0', at128));
      expect(groupOf('2001:db8::1', at128)).not.toBe(groupOf('2001:db8::1:0', at128));
    });

    it('reads an embedded IPv4 tail as the last two groups', () => {
      expect(groupOf('64:ff9b::10.1.2.3', at128)).toBe(groupOf('64:ff9b::a01:203', at128));
      expect(groupOf('::10.1.2.3', at128)).toBe(groupOf('::a01:203', at128));
      expect(groupOf('0:0:0:0:0:ffff:1.2.3.4', at128)).toBe(groupOf('::ffff:102:304', at128));
      expect(groupOf('64:ff9b::10.1.2.3', at64)).toBe(groupOf('64:ff9b::10.9.9.9', at64));
    });

    it('ignores a zone id', () => {
      expect(groupOf('fe80::1%eth0', at128)).toBe(groupOf('fe80::1', at128));
      expect(groupOf('fe80::1%eth0', at64)).toBe(groupOf('fe80::2%eth1', at64));
    });

    it('never puts an IPv6 group together with an IPv4 one', () => {
      expect(groupOf('::', limits({ ipv6Prefix: 0 }))).not.toBe(groupOf('0.0.0.0', limits({ ipv4Prefix: 0 })));
    });
  });

  it('gives anything else its own group, as it is', () => {
    expect(groupOf('not-an-address', limits())).toBe('not-an-address');
  });
});

describe('ConnectionGate', () => {
  it('lets everyone in when there are no limits, and counts them', () => {
    const gate = new ConnectionGate(limits());
    for (let i = 0; i < 100; i += 1) expect(gate.enter('10.0.0.1').refusal).toBeNull();
    expect(gate.size).toBe(100);
  });

  it('refuses past maxClients, whatever the addresses', () => {
    const gate = new ConnectionGate(limits({ maxClients: 2 }));
    expect(gate.enter('10.0.0.1').refusal).toBeNull();
    expect(gate.enter('10.0.0.2').refusal).toBeNull();
    expect(gate.enter('10.0.0.3').refusal).toBe('max-clients');
  });

  it('refuses past maxConnectionsPerAddress from one address, and lets other addresses in', () => {
    const gate = new ConnectionGate(limits({ maxConnectionsPerAddress: 2 }));
    expect(gate.enter('10.0.0.1').refusal).toBeNull();
    expect(gate.enter('10.0.0.1').refusal).toBeNull();
    expect(gate.enter('10.0.0.1').refusal).toBe('max-per-address');
    expect(gate.enter('10.0.0.2').refusal).toBeNull();
  });

  it('counts a whole /24 as one address when ipv4Prefix is 24', () => {
    const gate = new ConnectionGate(limits({ maxConnectionsPerAddress: 1, ipv4Prefix: 24 }));
    expect(gate.enter('192.0.2.1').refusal).toBeNull();
    expect(gate.enter('192.0.2.77').refusal).toBe('max-per-address');
    expect(gate.enter('192.0.3.1').refusal).toBeNull();
  });

  it('counts a whole /64 as one address, and a /48 when ipv6Prefix is 48', () => {
    const at64 = new ConnectionGate(limits({ maxConnectionsPerAddress: 1 }));
    expect(at64.enter('2001:db8:0:1::1').refusal).toBeNull();
    expect(at64.enter('2001:db8:0:1::2').refusal).toBe('max-per-address');
    expect(at64.enter('2001:db8:0:2::1').refusal).toBeNull();
    const at48 = new ConnectionGate(limits({ maxConnectionsPerAddress: 1, ipv6Prefix: 48 }));
    expect(at48.enter('2001:db8:0:1::1').refusal).toBeNull();
    expect(at48.enter('2001:db8:0:2::1').refusal).toBe('max-per-address');
  });

  it('says maxClients first when both limits are passed', () => {
    const gate = new ConnectionGate(limits({ maxClients: 1, maxConnectionsPerAddress: 1 }));
    gate.enter('10.0.0.1');
    expect(gate.enter('10.0.0.1').refusal).toBe('max-clients');
  });

  it('counts Unix clients (local) in maxClients only, never per address', () => {
    const gate = new ConnectionGate(limits({ maxClients: 3, maxConnectionsPerAddress: 1 }));
    const first = gate.enter('local');
    expect(first.refusal).toBeNull();
    expect(first.pass.group).toBeNull();
    expect(gate.enter('local').refusal).toBeNull();
    expect(gate.enter('local').refusal).toBeNull();
    expect(gate.enter('local').refusal).toBe('max-clients');
  });

  it('gives the slot back on leave, in all and in the group', () => {
    const gate = new ConnectionGate(limits({ maxClients: 2, maxConnectionsPerAddress: 1 }));
    const a = gate.enter('10.0.0.1');
    const b = gate.enter('10.0.0.2');
    expect(gate.enter('10.0.0.3').refusal).toBe('max-clients');
    gate.leave(gate.enter('10.0.0.3').pass); // leaves at once, as a refused connection does once closed
    expect(gate.size).toBe(3); // the first refused one has not left yet
    gate.leave(b.pass);
    gate.leave(a.pass);
    expect(gate.size).toBe(1);
    expect(gate.enter('10.0.0.1').refusal).toBeNull(); // its group slot is free again
    expect(gate.size).toBe(2);
  });

  it('counts refused connections until they leave, so a flood is counted while it closes', () => {
    const gate = new ConnectionGate(limits({ maxClients: 2 }));
    const admitted = [gate.enter('10.0.0.1'), gate.enter('10.0.0.2')];
    const refused = [gate.enter('10.0.0.3'), gate.enter('10.0.0.4')];
    expect(refused.map((entry) => entry.refusal)).toEqual(['max-clients', 'max-clients']);
    expect(gate.size).toBe(4);
    gate.leave(admitted[0].pass);
    const third = gate.enter('10.0.0.5');
    expect(third.refusal).toBe('max-clients'); // the refused two still count
    for (const entry of [...refused, third]) gate.leave(entry.pass);
    expect(gate.enter('10.0.0.6').refusal).toBeNull();
  });

  it('counts refused connections in their group until they leave', () => {
    const gate = new ConnectionGate(limits({ maxConnectionsPerAddress: 1 }));
    const admitted = gate.enter('10.0.0.1');
    const refused = gate.enter('10.0.0.1');
    expect(refused.refusal).toBe('max-per-address');
    gate.leave(admitted.pass);
    expect(gate.enter('10.0.0.1').refusal).toBe('max-per-address');
    gate.leave(refused.pass);
  });

  it('reads the limits at every connection, so a change applies at once', () => {
    const live = { maxClients: 1, maxConnectionsPerAddress: 0, ipv4Prefix: 32, ipv6Prefix: 64 };
    const gate = new ConnectionGate(live);
    gate.enter('10.0.0.1');
    expect(gate.enter('10.0.0.2').refusal).toBe('max-clients');
    live.maxClients = 0;
    expect(gate.enter('10.0.0.3').refusal).toBeNull();
  });
});
