import createDebug from 'debug';
import { DEFAULTS, LOG_LEVELS, Multiplexer, SETTING_KEYS, type Settings } from '../lib';

/** Calls `fn` and returns what it threw (fails the test when it throws nothing). */
function thrown(fn: () => unknown): TypeError & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as TypeError & { code?: string };
  }
  throw new Error('expected a throw');
}

const kebab = (key: string): string => key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);

describe('config()', () => {
  it('returns every setting with its default when called without arguments', () => {
    const mux = new Multiplexer();
    expect(mux.config()).toEqual(DEFAULTS);
    expect(Object.keys(mux.config()).sort()).toEqual([...SETTING_KEYS].sort());
  });

  it('defaults to sendtoorigin off and debuglevel warn, as Tcl', () => {
    const mux = new Multiplexer();
    expect(mux.config('sendtoorigin')).toBe(false);
    expect(mux.config('debuglevel')).toBe('warn');
  });

  it('returns a snapshot that does not change the settings when modified', () => {
    const mux = new Multiplexer();
    const snapshot = mux.config() as Settings;
    snapshot.sendToOrigin = true;
    expect(mux.config('sendToOrigin')).toBe(false);
  });

  it('accepts the Tcl names sendtoorigin and debuglevel', () => {
    const mux = new Multiplexer();
    mux.config('sendtoorigin', 1);
    mux.config('debuglevel', 'info');
    expect(mux.config('sendToOrigin')).toBe(true);
    expect(mux.config('debugLevel')).toBe('info');
  });

  it('accepts camelCase and kebab-case names for every setting', () => {
    const mux = new Multiplexer();
    for (const key of SETTING_KEYS) {
      expect(mux.config(kebab(key))).toEqual(mux.config(key));
      expect(mux.config(key.toLowerCase())).toEqual(mux.config(key));
    }
    mux.config('send-to-origin', true);
    mux.config('max-queued-bytes', 4096);
    expect(mux.config('sendToOrigin')).toBe(true);
    expect(mux.config('maxQueuedBytes')).toBe(4096);
  });

  it('returns the instance when setting, so calls chain', () => {
    const mux = new Multiplexer();
    expect(mux.config('sendtoorigin', 0)).toBe(mux);
  });

  it.each([
    ['1', true],
    ['yes', true],
    ['on', true],
    ['true', true],
    ['TRUE', true],
    [1, true],
    [true, true],
    ['0', false],
    ['no', false],
    ['off', false],
    ['false', false],
    [0, false],
    [false, false],
  ])('reads the Tcl-style boolean %p as %p', (value, expected) => {
    const mux = new Multiplexer({ sendToOrigin: !expected });
    mux.config('sendtoorigin', value);
    expect(mux.config('sendtoorigin')).toBe(expected);
  });

  it('reads numbers given as strings, as Tcl passes them', () => {
    const mux = new Multiplexer();
    mux.config('maxQueuedBytes', '4096');
    mux.config('max-clients', '0');
    expect(mux.config('maxQueuedBytes')).toBe(4096);
    expect(mux.config('maxClients')).toBe(0);
  });

  it('accepts every Tcl logger level for debuglevel and applies it to the logger', () => {
    const mux = new Multiplexer();
    for (const level of LOG_LEVELS) {
      mux.config('debuglevel', level);
      expect(mux.config('debugLevel')).toBe(level);
      expect(mux.log.level).toBe(level);
    }
  });

  it('throws a TypeError with code ERR_UNKNOWN_CONFIG_KEY naming the valid keys for an unknown key', () => {
    const mux = new Multiplexer();
    const error = thrown(() => mux.config('sendtoeveryone', 1));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_UNKNOWN_CONFIG_KEY');
    expect(error.message).toContain('sendtoeveryone');
    for (const key of SETTING_KEYS) expect(error.message).toContain(key);
    expect(error.message).toContain('sendtoorigin');
  });

  it('throws the same way when reading an unknown key', () => {
    const mux = new Multiplexer();
    const error = thrown(() => mux.config('nosuchkey'));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_UNKNOWN_CONFIG_KEY');
  });

  it.each([
    ['sendtoorigin', 'maybe', ['true', 'false', 'yes', 'no']],
    ['sendtoorigin', undefined, ['true', 'false']],
    ['debuglevel', 'loud', [...LOG_LEVELS]],
    ['slowConsumer', 'explode', ['disconnect', 'drop-newest', 'drop-oldest']],
    ['maxQueuedBytes', -1, ['integer']],
    ['maxQueuedBytes', 'lots', ['integer']],
    ['maxQueuedBytes', 1.5, ['integer']],
    ['maxQueuedBytes', 0, ['integer >= 1']],
    ['idleTimeout', '', ['integer']],
  ])('throws a TypeError with code ERR_INVALID_OPTION for %s = %p, naming what it accepts', (key, value, accepted) => {
    const mux = new Multiplexer();
    const error = thrown(() => mux.config(key, value));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_INVALID_OPTION');
    expect(error.message.toLowerCase()).toContain(key.toLowerCase());
    for (const word of accepted) expect(error.message).toContain(word);
  });

  it('keeps the previous value when a new one is rejected', () => {
    const mux = new Multiplexer({ debugLevel: 'error' });
    expect(() => mux.config('debuglevel', 'loud')).toThrow(TypeError);
    expect(mux.config('debuglevel')).toBe('error');
    expect(mux.log.level).toBe('error');
  });
});

describe('constructor options', () => {
  it('sets any setting by its camelCase name', () => {
    const mux = new Multiplexer({
      sendToOrigin: true,
      debugLevel: 'error',
      maxClients: 5,
      slowConsumer: 'drop-oldest',
    });
    expect(mux.config()).toEqual({
      ...DEFAULTS,
      sendToOrigin: true,
      debugLevel: 'error',
      maxClients: 5,
      slowConsumer: 'drop-oldest',
    });
  });

  it('validates values up front, with Tcl-style values accepted as in config()', () => {
    const loose = { sendToOrigin: 'yes', maxQueuedBytes: '65536' } as unknown as ConstructorParameters<
      typeof Multiplexer
    >[0];
    const mux = new Multiplexer(loose);
    expect(mux.config('sendToOrigin')).toBe(true);
    expect(mux.config('maxQueuedBytes')).toBe(65536);
  });

  it('throws a TypeError with code ERR_INVALID_OPTION naming the option for a bad value', () => {
    const bad = { debugLevel: 'loud' } as unknown as ConstructorParameters<typeof Multiplexer>[0];
    const error = thrown(() => new Multiplexer(bad));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_INVALID_OPTION');
    expect(error.message).toContain('debugLevel');
    expect(error.message).toContain('critical');
  });

  it('throws a TypeError naming the valid options for an unknown option', () => {
    const bad = { sendToEveryone: true } as unknown as ConstructorParameters<typeof Multiplexer>[0];
    const error = thrown(() => new Multiplexer(bad));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_INVALID_OPTION');
    expect(error.message).toContain('sendToEveryone');
    expect(error.message).toContain('sendToOrigin');
    expect(error.message).toContain('framing');
  });

  it('throws a TypeError when the options are not an object', () => {
    const bad = null as unknown as ConstructorParameters<typeof Multiplexer>[0];
    expect(thrown(() => new Multiplexer(bad))).toBeInstanceOf(TypeError);
  });

  it('throws a TypeError for an unknown framing', () => {
    const bad = { framing: 'xml' } as unknown as ConstructorParameters<typeof Multiplexer>[0];
    const error = thrown(() => new Multiplexer(bad));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.code).toBe('ERR_INVALID_OPTION');
    expect(error.message).toMatch(/raw.*line/);
  });

  it('uses the framing and name it is given', () => {
    const mux = new Multiplexer({ framing: 'line', name: 'chat' });
    expect(mux.framing.name).toBe('line');
    expect(mux.name).toBe('chat');
    expect(mux.log.namespace).toBe('multiplexer:chat');
  });

  it('gives each instance its own name when none is given', () => {
    const a = new Multiplexer();
    const b = new Multiplexer();
    expect(a.name).not.toBe(b.name);
  });
});

describe('debuglevel', () => {
  it('logs the level it names and those above it', () => {
    const mux = new Multiplexer({ debugLevel: 'notice' });
    expect(mux.log.enabled('info')).toBe(false);
    expect(mux.log.enabled('notice')).toBe(true);
    expect(mux.log.enabled('critical')).toBe(true);
    mux.config('debuglevel', 'debug');
    expect(mux.log.enabled('debug')).toBe(true);
  });

  it("never changes the user's DEBUG namespaces", () => {
    const previous = createDebug.disable();
    try {
      createDebug.enable('app:*');
      const mux = new Multiplexer({ debugLevel: 'debug', name: 'quiet' });
      mux.config('debuglevel', 'critical');
      expect(createDebug.enabled('app:db')).toBe(true);
      expect(createDebug.enabled('other')).toBe(false);
      expect(createDebug.enabled('multiplexer:quiet:debug')).toBe(false);
    } finally {
      createDebug.enable(previous);
    }
  });

  it('lets DEBUG switch on a level below the threshold', () => {
    const previous = createDebug.disable();
    try {
      createDebug.enable('multiplexer:verbose:info');
      const mux = new Multiplexer({ name: 'verbose' });
      expect(mux.log.enabled('info')).toBe(true);
      expect(mux.log.enabled('debug')).toBe(false);
      expect(mux.log.enabled('warn')).toBe(true);
    } finally {
      createDebug.enable(previous);
    }
  });
});
