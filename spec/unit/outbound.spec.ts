import { DIRECT_LIMIT } from '../../lib/fanout/outbound';
import { ENTRY_OVERHEAD } from '../../lib/fanout/outbound-queue';
import { Share } from '../../lib/fanout/share';
import { slabOf, type Slab } from '../../lib/fanout/slab';
import type { Settings } from '../../lib/options';
import { OutboundPeer, RecordingAccount, settingsWith } from '../helpers/fanout';
import { MemoryConnection } from '../helpers/memory-connection';

/** A share of slab ranges (`[first, last]`) and own buffers, in order. */
function shareOf(...pieces: Array<[number, number] | Buffer>): Share {
  const share = new Share();
  for (const piece of pieces) {
    if (Buffer.isBuffer(piece)) share.own(piece);
    else share.range(piece[0], piece[1]);
  }
  return share;
}

/** `count` messages of `size` bytes, each filled with its own letter from `first` on. */
function sized(count: number, size: number, first = 'a'): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.alloc(size, first.charCodeAt(0) + i));
}

/** The letters of the messages written, one per message of `size` bytes. */
const letters = (bytes: Buffer, size: number): string =>
  Array.from({ length: bytes.length / size }, (_, i) => String.fromCharCode(bytes[i * size])).join('');

/** A peer whose kernel takes nothing until completions, with the given settings. */
function stalledPeer(settings: Partial<Settings> = {}, account = new RecordingAccount()): OutboundPeer {
  return new OutboundPeer(new MemoryConnection().stall(), settingsWith(settings), account);
}

/** Gives the whole of `slab` to the peer as one share. */
function giveAll(peer: OutboundPeer, slab: Slab): void {
  peer.out.accept(shareOf([0, slab.count]), slab, []);
}

describe('Outbound', () => {
  describe('a receiver that keeps up', () => {
    it('is written its share at once, in one write of views into the slab and its own buffers', () => {
      const peer = new OutboundPeer();
      const slab = slabOf([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')]);
      const own = Buffer.from('own');
      peer.out.accept(shareOf([0, 1], own, [2, 3]), slab, []);
      expect(peer.connection.writes).toHaveLength(1);
      const [views] = peer.connection.writes;
      expect(views.map(String)).toEqual(['a', 'own', 'c']);
      expect(views[0].buffer).toBe(slab.buffer.buffer);
      expect(views[1]).toBe(own);
      expect(peer.counted).toEqual({ bytes: 5, messages: 3 });
    });

    it('holds nothing once the kernel took the write', () => {
      const peer = new OutboundPeer();
      giveAll(peer, slabOf(sized(3, 10)));
      expect(peer.account.bytes).toBe(0);
      expect(peer.out.heldBytes).toBe(0);
      expect(peer.out.idle).toBe(true);
      expect(peer.take()).toEqual([]);
    });

    it('writes nothing for an empty share', () => {
      const peer = new OutboundPeer();
      peer.out.accept(new Share(), slabOf([Buffer.from('x')]), []);
      expect(peer.connection.writes).toHaveLength(0);
    });

    it('counts a write in flight in the account until it completes: the slab once, its own bytes', () => {
      const peer = stalledPeer();
      const slab = slabOf(sized(2, 100));
      peer.out.accept(shareOf([0, 1], Buffer.alloc(7)), slab, []);
      expect(peer.account.bytes).toBe(200 + 7); // the whole slab, referenced by the write
      expect(peer.out.heldBytes).toBe(107);
      peer.connection.complete();
      expect(peer.account.bytes).toBe(0);
      expect(peer.out.heldBytes).toBe(0);
    });

    it('counts a slab in flight to many receivers once, released when the last write completes', () => {
      const account = new RecordingAccount();
      const peers = [stalledPeer({}, account), stalledPeer({}, account), stalledPeer({}, account)];
      const slab = slabOf(sized(4, 50));
      for (const peer of peers) giveAll(peer, slab);
      expect(account.bytes).toBe(200);
      peers[0].connection.complete();
      peers[1].connection.complete();
      expect(account.bytes).toBe(200);
      peers[2].connection.complete();
      expect(account.bytes).toBe(0);
    });

    it('releases writes in flight in the order they complete, as the kernel takes their bytes', () => {
      const peer = stalledPeer();
      const first = slabOf(sized(1, 1000));
      const second = slabOf(sized(1, 10, 'x'));
      giveAll(peer, first);
      giveAll(peer, second); // still under 64 KiB pending: written at once too
      expect(peer.connection.writes).toHaveLength(2);
      expect(peer.account.bytes).toBe(1010);
      peer.connection.complete(1000);
      expect(peer.account.bytes).toBe(10);
      peer.connection.complete(10);
      expect(peer.account.bytes).toBe(0);
    });

    it('reports backlogged once, when a write leaves bytes in the kernel and none were waiting', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf(sized(1, 10)));
      giveAll(peer, slabOf(sized(1, 10)));
      expect(peer.take()).toEqual(['backlogged']);
      peer.connection.complete();
      giveAll(peer, slabOf(sized(1, 10)));
      expect(peer.take()).toEqual(['backlogged']);
    });

    it('stamps progressAt when the backlog begins, and at each completion', () => {
      jest.useFakeTimers({ now: 1_000_000 });
      try {
        const peer = stalledPeer();
        giveAll(peer, slabOf(sized(1, 10)));
        expect(peer.out.progressAt).toBe(1_000_000);
        jest.advanceTimersByTime(500);
        peer.connection.complete();
        expect(peer.out.progressAt).toBe(1_000_500);
      } finally {
        jest.useRealTimers();
      }
    });
  });

  describe('a receiver that is behind', () => {
    it('queues its share once 64 KiB wait in the kernel, and is written from the queue as completions come', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT, 0x41)]));
      const slab = slabOf(sized(3, 10));
      giveAll(peer, slab);
      expect(peer.connection.writes).toHaveLength(1);
      expect(peer.out.idle).toBe(false);
      expect(peer.out.queuedBytes).toBe(30 + ENTRY_OVERHEAD);
      expect(peer.out.backlog).toBe(DIRECT_LIMIT + 30 + ENTRY_OVERHEAD);
      peer.connection.complete();
      expect(peer.connection.writes).toHaveLength(2);
      expect(peer.connection.writes[1]).toHaveLength(1); // the queued range, as one view
      expect(letters(peer.connection.writes[1][0], 10)).toBe('abc');
      expect(peer.out.idle).toBe(true);
    });

    it('queues what comes while others wait in its queue, after them, even once the kernel has room', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT, 0x41)]));
      giveAll(peer, slabOf(sized(2, 10, 'a')));
      peer.connection.pending = 0; // the kernel took its bytes, the completion has not come yet
      giveAll(peer, slabOf(sized(2, 10, 'c')));
      const after = peer.connection.writes.slice(1).flat();
      expect(letters(Buffer.concat(after), 10)).toBe('abcd');
    });

    it('writes from its queue in whole messages, at most 256 KiB per write, while under 64 KiB wait', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT, 0x41)]));
      giveAll(peer, slabOf(sized(6, 100 * 1024)));
      peer.connection.complete();
      expect(peer.connection.writes).toHaveLength(2);
      expect(Buffer.concat(peer.connection.writes[1])).toHaveLength(200 * 1024); // two, a third would pass
      peer.connection.complete();
      peer.connection.complete();
      peer.connection.complete();
      const rest = Buffer.concat(peer.connection.writes.slice(1).flat());
      expect(letters(rest, 100 * 1024)).toBe('abcdef');
      expect(peer.account.bytes).toBe(0);
    });

    it('keeps queued ranges and own messages counted until they are written and complete', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT, 0x41)]));
      const slab = slabOf(sized(2, 10));
      peer.out.accept(shareOf([0, 2], Buffer.alloc(5)), slab, []);
      expect(peer.account.bytes).toBe(DIRECT_LIMIT + 20 + 5);
      peer.connection.complete(DIRECT_LIMIT);
      expect(peer.account.bytes).toBe(20 + 5); // written, in flight
      peer.connection.complete();
      expect(peer.account.bytes).toBe(0);
    });

    it('is not written while its connection is not writable, and keeps what is queued', () => {
      const peer = new OutboundPeer();
      peer.connection.writable = false;
      giveAll(peer, slabOf(sized(2, 10)));
      expect(peer.connection.writes).toHaveLength(0);
      expect(peer.out.idle).toBe(false);
    });
  });

  describe('maxQueuedBytes and the slow-consumer policy', () => {
    const max = 100_000;
    /** A peer with 70 000 bytes in the kernel. */
    function fullPeer(slowConsumer: Settings['slowConsumer']): OutboundPeer {
      const peer = stalledPeer({ maxQueuedBytes: max, highWaterMark: 10 * max, slowConsumer });
      giveAll(peer, slabOf([Buffer.alloc(70_000, 0x41)]));
      peer.take();
      return peer;
    }

    it('with disconnect, reports overflowed(0) and queues nothing', () => {
      const peer = fullPeer('disconnect');
      giveAll(peer, slabOf(sized(5, 10_000)));
      expect(peer.take()).toEqual(['overflowed:0']);
      expect(peer.out.idle).toBe(true);
      expect(peer.account.bytes).toBe(70_000);
    });

    it('may queue up to four times the limit for a second after it began lagging while it still reads', () => {
      const peer = fullPeer('disconnect');
      peer.out.lagging = true;
      peer.out.laggedAt = Date.now();
      peer.out.progressAt = Date.now();
      giveAll(peer, slabOf(sized(20, 10_000)));
      expect(peer.take()).not.toContain('overflowed:0');
      expect(peer.out.backlog).toBeGreaterThan(2 * max);
      giveAll(peer, slabOf(sized(15, 10_000)));
      expect(peer.take()).toContain('overflowed:0'); // past four times the limit
    });

    it('is held to the limit again once that second has passed', () => {
      const peer = fullPeer('disconnect');
      peer.out.lagging = true;
      peer.out.laggedAt = Date.now() - 1500;
      peer.out.progressAt = Date.now();
      giveAll(peer, slabOf(sized(5, 10_000)));
      expect(peer.take()).toContain('overflowed:0');
    });

    it('queues a share that fits exactly, counting the entry overhead', () => {
      const peer = fullPeer('disconnect');
      giveAll(peer, slabOf([Buffer.alloc(30_000 - ENTRY_OVERHEAD)]));
      expect(peer.take()).toEqual([]);
      expect(peer.out.backlog).toBe(max);
    });

    it('with drop-newest, keeps the oldest messages that fit and drops the rest', () => {
      const peer = fullPeer('drop-newest');
      giveAll(peer, slabOf(sized(5, 10_000)));
      expect(peer.take()).toEqual(['overflowed:3']); // backlogged already, by the bytes in the kernel
      expect(peer.out.drops).toBe(3);
      expect(peer.out.backlog).toBeLessThanOrEqual(max);
      peer.connection.complete();
      peer.connection.complete();
      expect(letters(Buffer.concat(peer.connection.writes.slice(1).flat()), 10_000)).toBe('ab');
    });

    it('with drop-oldest, drops queued messages first to make room for the new', () => {
      const peer = fullPeer('drop-oldest');
      giveAll(peer, slabOf(sized(2, 10_000, 'a')));
      peer.take();
      giveAll(peer, slabOf([Buffer.alloc(15_000, 0x7a)]));
      expect(peer.take()).toEqual(['overflowed:1']);
      expect(peer.out.backlog).toBeLessThanOrEqual(max);
      peer.connection.complete();
      const written = Buffer.concat(peer.connection.writes.slice(1).flat());
      expect(written.subarray(0, 10_000).every((byte) => byte === 0x62)).toBe(true); // a went, b stays
      expect(written.subarray(10_000).every((byte) => byte === 0x7a)).toBe(true);
      expect(written).toHaveLength(25_000);
    });

    it("with drop-oldest, then drops the share's own oldest messages when the queue is not enough", () => {
      const peer = fullPeer('drop-oldest');
      giveAll(peer, slabOf(sized(1, 10_000, 'a')));
      peer.take();
      giveAll(peer, slabOf(sized(4, 10_000, 'w')));
      expect(peer.take()).toEqual(['overflowed:3']); // a, then w and x; y and z fit
      peer.connection.complete();
      peer.connection.complete();
      expect(letters(Buffer.concat(peer.connection.writes.slice(1).flat()), 10_000)).toBe('yz');
    });

    it('never drops what the kernel already holds', () => {
      const peer = fullPeer('drop-oldest');
      giveAll(peer, slabOf(sized(1, 40_000)));
      expect(peer.take()).toEqual(['overflowed:1']);
      expect(peer.out.backlog).toBe(70_000);
      expect(peer.account.bytes).toBe(70_000);
    });
  });

  describe('queueOwn', () => {
    it('queues a message of its own without writing it, to be written by the next pump', () => {
      const peer = new OutboundPeer();
      expect(peer.out.queueOwn(Buffer.from('direct'))).toBe(true);
      expect(peer.connection.writes).toHaveLength(0);
      expect(peer.account.bytes).toBe(6);
      peer.out.pump();
      expect(peer.connection.text).toBe('direct');
      expect(peer.account.bytes).toBe(0);
    });

    it('is written after what was queued before it', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT, 0x41)]));
      giveAll(peer, slabOf([Buffer.from('shared;')]));
      peer.out.queueOwn(Buffer.from('own;'));
      peer.connection.complete();
      expect(Buffer.concat(peer.connection.writes.slice(1).flat()).toString()).toBe('shared;own;');
    });

    it('returns false when the policy is to disconnect and it does not fit', () => {
      const peer = stalledPeer({ maxQueuedBytes: 1000 });
      expect(peer.out.queueOwn(Buffer.alloc(2000))).toBe(false);
      expect(peer.take()).toEqual(['overflowed:0']);
    });

    it('returns false when drop-newest drops it', () => {
      const peer = stalledPeer({ maxQueuedBytes: 1000, slowConsumer: 'drop-newest' });
      expect(peer.out.queueOwn(Buffer.alloc(500))).toBe(true);
      expect(peer.out.queueOwn(Buffer.alloc(500))).toBe(false);
      expect(peer.out.drops).toBe(1);
    });

    // Suspected bug (lib/fanout/outbound.ts, queueOwn: `return ok && this.drops === dropsBefore`): under
    // drop-oldest a message that is kept while older ones are dropped to make room for it is reported as
    // dropped, so `client.send()` returns false for a message that will be delivered.
    it('returns true under drop-oldest when its message is kept and older ones make room', () => {
      const peer = stalledPeer({ maxQueuedBytes: 1000, slowConsumer: 'drop-oldest' });
      expect(peer.out.queueOwn(Buffer.alloc(500, 0x61))).toBe(true);
      expect(peer.out.queueOwn(Buffer.alloc(500, 0x62))).toBe(true);
      peer.out.pump();
      expect(letters(peer.connection.written, 500)).toBe('b');
    });
  });

  describe('congestion callbacks', () => {
    const hwm = 10_000;

    it('reports congested once, when a write leaves more than highWaterMark in the kernel', () => {
      const peer = stalledPeer({ highWaterMark: hwm });
      giveAll(peer, slabOf([Buffer.alloc(hwm)]));
      expect(peer.take()).toEqual(['backlogged']);
      giveAll(peer, slabOf([Buffer.alloc(1)]));
      expect(peer.take()).toEqual(['congested']);
      giveAll(peer, slabOf([Buffer.alloc(1)]));
      expect(peer.take()).toEqual([]);
    });

    it('reports congested when its queue and the kernel together pass highWaterMark', () => {
      const peer = stalledPeer({ highWaterMark: DIRECT_LIMIT + 200 });
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT)]));
      peer.take();
      giveAll(peer, slabOf([Buffer.alloc(50)]));
      expect(peer.take()).toEqual([]); // 50 bytes and an entry queued: 65 650, under the mark
      giveAll(peer, slabOf([Buffer.alloc(50)]));
      expect(peer.take()).toEqual(['congested']); // another entry: 65 764
    });

    it('reports progressed at each completion while congested, and not otherwise', () => {
      const peer = stalledPeer({ highWaterMark: hwm });
      giveAll(peer, slabOf([Buffer.alloc(hwm / 2)]));
      peer.connection.complete();
      expect(peer.take()).toEqual(['backlogged']);
      giveAll(peer, slabOf([Buffer.alloc(hwm * 3)]));
      peer.take();
      peer.connection.complete(hwm);
      expect(peer.take()).toEqual(['progressed']);
      peer.out.lagging = true; // what the flow control sets once senders stop waiting for it
      peer.out.congested = false;
      peer.connection.complete(hwm / 10);
      expect(peer.take()).toEqual(['progressed']);
    });

    it('reports relieved once the backlog is down to half of highWaterMark after congestion', () => {
      const peer = stalledPeer({ highWaterMark: hwm });
      giveAll(peer, slabOf([Buffer.alloc(hwm * 2)]));
      peer.take();
      peer.connection.complete(hwm * 2 - hwm / 2 - 1); // just over half the mark left
      expect(peer.take()).toEqual(['progressed']);
      peer.connection.complete(1);
      expect(peer.take()).toEqual(['progressed', 'relieved']);
      peer.connection.complete();
      expect(peer.take()).toEqual([]);
    });

    it('follows the typical gap between completions while congested', () => {
      jest.useFakeTimers({ now: 0 });
      try {
        const peer = stalledPeer({ highWaterMark: hwm, maxQueuedBytes: hwm * 1000 });
        giveAll(peer, slabOf([Buffer.alloc(hwm * 200)]));
        jest.advanceTimersByTime(400);
        peer.connection.complete(hwm);
        expect(peer.out.typicalGap).toBe(400);
        // A burst of quick completions after a long gap keeps the long gap: it fades with time, not with them.
        for (let i = 0; i < 5; i += 1) {
          jest.advanceTimersByTime(1);
          peer.connection.complete(hwm);
        }
        expect(peer.out.typicalGap).toBeCloseTo(400 * 0.5 ** (5 / 10_000), 5);
        for (let i = 0; i < 100; i += 1) {
          jest.advanceTimersByTime(100);
          peer.connection.complete(hwm);
        }
        expect(peer.out.typicalGap).toBeCloseTo(200, -1); // half of it after ten seconds of shorter gaps
        jest.advanceTimersByTime(1000);
        peer.connection.complete(hwm);
        expect(peer.out.typicalGap).toBe(1000); // a longer gap is taken at once
      } finally {
        jest.useRealTimers();
      }
    });

    it('reports flushed once a polite close has nothing left to send', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT)]));
      giveAll(peer, slabOf([Buffer.alloc(10)]));
      peer.take();
      peer.out.endWhenFlushed = true;
      peer.connection.complete();
      expect(peer.take()).toContain('flushed'); // the queue is empty: the connection's end() sends the rest
      expect(peer.out.endWhenFlushed).toBe(false);
    });
  });

  describe('clear and release', () => {
    it('clear drops what is queued and says how many messages', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT)]));
      giveAll(peer, slabOf(sized(3, 10)));
      peer.out.queueOwn(Buffer.from('own'));
      expect(peer.out.clear()).toBe(4);
      expect(peer.out.idle).toBe(true);
      expect(peer.account.bytes).toBe(DIRECT_LIMIT); // what is in flight stays until it completes
    });

    it('release lets go of everything, in flight included', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT)]));
      peer.out.accept(shareOf(Buffer.alloc(5)), null, []);
      giveAll(peer, slabOf(sized(3, 10)));
      peer.out.release();
      expect(peer.account.bytes).toBe(0);
      expect(peer.out.heldBytes).toBe(0);
    });

    it('dropOldest drops queued messages until the cost is freed', () => {
      const peer = stalledPeer();
      giveAll(peer, slabOf([Buffer.alloc(DIRECT_LIMIT)]));
      giveAll(peer, slabOf(sized(3, 10)));
      expect(peer.out.dropOldest(15)).toBe(2);
      peer.connection.complete();
      expect(letters(Buffer.concat(peer.connection.writes.slice(1).flat()), 10)).toBe('c');
    });
  });
});
