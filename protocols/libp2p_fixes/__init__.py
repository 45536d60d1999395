"""Every workaround for a py-libp2p defect, one module per py-libp2p area; this is the index.

Upstream version: **py-libp2p 0.8.1** for every entry.  Each fix is scoped to the object it is
given or that the caller constructs (an instance attribute on one host, swarm, transport or
``KadDHT``; a subclass the caller instantiates; keyword arguments): no py-libp2p class or module
is changed, so nothing outlives its user.  ``tests/conftest.py`` checks that after every test
(:data:`TOUCHED`), and ``tests/fixes/test_scoping.py`` checks that a stock object built next to a
fixed one is stock.  Tests live in ``tests/fixes/test_<module>.py``; each "bug"/"stock" test shows
the defect on stock py-libp2p.  When an upgrade fixes a defect its stock test fails: delete that
test and the fix together.

This package imports nothing here (so importing ``protocols`` loads no py-libp2p); its modules
import py-libp2p and :mod:`protocols` only.

``keys`` — Ed25519 identities (test module ``test_keys``)

* py-libp2p writes a 32-byte Ed25519 key (go-libp2p requires the 64-byte ``seed || public``)
  → :func:`~.keys.encode_ed25519_private_key`; test
  ``test_bug_py_libp2p_serializes_an_ed25519_key_as_its_32_byte_seed``.
* ``deserialize_private_key`` reads only 32 bytes (fails on go/rust/js key files)
  → :func:`~.keys.decode_ed25519_private_key`; test
  ``test_bug_py_libp2p_cannot_read_a_key_file_written_by_another_libp2p``.

``host`` — host, swarm, listeners, dial backoff, peerstore addresses, resource manager
(``test_host``)

* Leaving ``BasicHost.run()`` cancels ``Swarm.run``'s unshielded cleanup: listening sockets and
  listener tasks stay → :func:`~.host.close_host`;
  ``test_bug_leaving_host_run_leaves_the_listener_open``.
* An exception raised inside ``async with host.run()`` comes out in nested ``ExceptionGroup``\\ s
  → :func:`~.host.unwrap_host_run_exception`;
  ``test_bug_an_exception_from_the_run_block_comes_out_in_nested_groups``.
* One failed dial puts the peer in a 60 s "negative cache": every dial fails at once
  → :func:`~.host.clear_dial_backoff`; ``test_bug_one_failed_dial_blocks_every_dial_to_the_peer``.
* ``dial_peer`` dials the first known address per transport and ``connect(info)`` only appends,
  so a stale address hides the given one → :func:`~.host.forget_peer_addrs`;
  ``test_bug_a_stale_address_hides_the_one_given_to_connect``.
* ``SO_REUSEPORT`` lets a second host listen on a taken port; the kernel then shares its
  connections → :func:`~.host.check_listen_addrs_free`;
  ``test_bug_a_second_host_listens_on_a_port_another_host_has``.
* ``Swarm.listen`` swallows a bind error and the host runs deaf
  → :func:`~.host.require_listeners`;
  ``test_bug_a_host_that_cannot_bind_runs_deaf_and_leaks_the_listener``.
* The listener of an address that failed to bind is dropped unclosed; its task runs forever
  → :func:`~.host.track_listeners` + :func:`~.host.close_orphan_listeners`; same test.
* Each inbound connection's handler holds an inbound slot until the swarm stops, so a
  long-running host refuses everything → :func:`~.host.release_inbound_slots`;
  ``test_bug_closed_inbound_connections_keep_their_inbound_slots``.
* ``Swarm.close_peer`` forgets a connection to the peer established while it was closing
  → :func:`~.host.keep_new_connections_on_close_peer`;
  ``test_bug_close_peer_forgets_a_connection_that_arrived_meanwhile``.
* The default resource manager admits 256 inbound connections whatever ``max_connections``
  says → :func:`~.host.size_resource_manager`;
  ``test_bug_the_default_resource_manager_admits_256_inbound_connections``.
* (A setting, not a fix: every ``connect`` waits 250 ms with the default connection config;
  :mod:`dndm_p2p.host.build` uses ``max_connections_per_peer=1``;
  ``test_bug_with_default_connection_config_every_connect_takes_250_ms``.)

``peerstore`` — the peer store and protocol handlers (``test_peerstore``; 5,000 peers churning
through a node in ``tests/attacks/test_peer_churn.py``)

* ``PeerStore`` holds 1,000 peers and evicts address-less entries first, the host's own key
  entry among them; the next identify request then raises ``PeerStoreError`` and the host dies
  → :class:`~.peerstore.BoundedPeerStore` (a bound from the config, never the own key nor a
  connected peer, least recently seen first);
  ``test_bug_the_stock_peer_store_evicts_the_hosts_own_key_after_max_peers``.
* Every inbound stream's handler runs in its connection's nursery: an exception from any
  handler (identify, ping, kad, ...) ends the swarm and the host
  → :func:`~.peerstore.guard_stream_handlers`;
  ``test_bug_an_exception_in_a_protocol_handler_ends_the_host``.

``kad`` — kad-dht, all applied by :func:`~.kad.apply_kad_fixes` to one ``KadDHT`` (``test_kad``)

* ``PeerRouting.find_closest_peers_network`` ends a lookup after one unchanged round with up to
  half of the k closest candidates unasked, and returns peers that never answered (13 % finds
  at 1,000 nodes) → :func:`~.kad.iterative_lookup`;
  ``test_stock_lookup_stops_while_closest_candidates_are_unqueried``.
* ``ProviderStore.find_providers`` drops closer peers' addresses, counts a provider once per
  holder, answers from the local store alone when it has any record, and copies every provider
  found into the local store → fixed ``find_providers``;
  ``test_fixed_dht_mesh_provides_and_finds_from_every_node``.
* ``ProviderStore.provide`` reports success after one ADD_PROVIDER of 20 and never reads the
  echo, which over mplex blocks the connection's reader for 5 s → fixed ``provide``; same test.
* ``KadDHT._do_handle_stream`` adds the requester before reading the request that carries its
  addresses, so first-time requesters are never added → fixed ``_do_handle_stream``;
  ``test_a_server_learns_a_first_time_requester_only_with_the_fix``.

``pubsub`` — Pubsub and GossipSub (``test_pubsub``)

* "Adaptive gossip" sets the heartbeat to 30-60 s in any mesh smaller than the degree
  → :func:`~.pubsub.steady_heartbeat_options`;
  ``test_py_libp2p_adaptive_gossip_slows_the_heartbeat``.
* Our own messages go to the topic mesh only, so before the first GRAFT they go nowhere
  → :class:`~.pubsub.FloodPublishGossipSub`;
  ``test_py_libp2p_sends_our_own_messages_only_to_mesh_peers``.
* Sequence numbers start from the clock in seconds: a node restarted within seconds reuses them
  and peers drop its messages as seen → :class:`~.pubsub.FixedPubsub`;
  ``test_py_libp2p_pubsub_reuses_sequence_numbers_after_a_restart``.
* Concurrent writers to one pubsub stream interleave a large RPC's chunks
  → :meth:`~.pubsub.FixedPubsub.write_msg`;
  ``test_concurrent_rpc_writes_to_one_stream_stay_whole``.
* An RPC that is not valid protobuf raises ``DecodeError`` out of the stream handler and the
  host's swarm fails → :meth:`~.pubsub.FixedPubsub.stream_handler`;
  ``test_py_libp2p_host_dies_of_one_malformed_pubsub_rpc``.

``nat`` — AutoNAT v1, DCUtR, circuit relay v2 (``test_nat``; real NATs in
``tests/nat/test_nat_lab.py``)

* The AutoNAT server "dials back" over the request's own connection: every address is
  reachable → :class:`~.nat.DialBackAutoNAT` (:func:`~.nat.dial_back`);
  ``test_stock_autonat_calls_an_address_where_nothing_listens_reachable``.
* DCUtR dials private and unroutable addresses (10 s timeouts), lets both peers' sessions
  collide on one 4-tuple, drives punches every 2 s and closes the relay after 60 s
  → :class:`~.nat.PunchingDCUtR`; ``test_punching_dials_only_routable_addresses``.
* On the destination side a relayed connection's address names the destination itself as
  the relay → :class:`~.nat.StopSideCircuit`; ``tests/nat/test_nat.py`` (relayed sessions).
* ``host.get_addrs()`` turns ``<relay addr>/p2p/<relay>/p2p-circuit`` into the relay's address
  under our id → :func:`~.nat.advertise_addrs`;
  ``test_stock_get_addrs_turns_a_relayed_address_into_the_relays_address``.
* (Not a patch: ``CircuitV2Transport`` is not registered with the swarm, so :mod:`nat.relay`
  dials ``/p2p-circuit`` addresses through the transport itself.)

``noise`` — the Noise secure session (``test_noise``)

* ``write_msg`` encrypts a message (using up a nonce) and then awaits the socket write: a
  cancellation delivered there (say, to a stream reader whose yamux read sends a window update)
  drops the message, the peer fails to decrypt the next one and the connection dies with every
  stream on it; a message chunked into several Noise messages can also be cut between chunks
  → :class:`~.noise.WholeWriteNoise` (sessions that write each message whole, within a stall
  timeout); ``test_stock_noise_session_breaks_after_a_cancelled_write``,
  ``test_fixed_noise_session_sends_a_started_message_whole_despite_cancellation``; end to end:
  ``tests/node/test_link_churn.py``.

``mplex`` — the mplex muxer (``test_mplex``)

* ``MplexStream`` guards reads and writes with one readers-writer lock, so a task parked in
  ``read()`` blocks every ``write()``: full-duplex protocols deadlock
  → :class:`~.mplex.DuplexMplex` (simnet's hosts use it);
  ``test_stock_mplex_write_waits_for_a_parked_reader``.

``yamux`` — the yamux muxer (``test_yamux``)

* ``Yamux.handle_incoming`` keeps a DATA frame that exceeds the stream's receive window (it only
  logs), so a stream nobody reads buffers whatever the peer sends
  → :func:`~.yamux.windowed_yamux` (per host: :mod:`dndm_p2p.host.build` applies it);
  ``test_stock_yamux_buffers_past_the_receive_window``.
"""

from __future__ import annotations

__all__ = ["TOUCHED"]

#: The py-libp2p modules, and classes in them (``"module:Class"``), whose objects the fixes
#: wrap, subclass or configure.  None of them may change while the project runs.
TOUCHED: tuple[str, ...] = (
    "libp2p.host.basic_host:BasicHost",
    "libp2p.network.swarm:Swarm",
    "libp2p.peer.peerstore:PeerStore",
    "libp2p.transport.tcp.tcp:TCP",
    "libp2p.crypto.ed25519:Ed25519PrivateKey",
    "libp2p.crypto.serialization",
    "libp2p.kad_dht.kad_dht:KadDHT",
    "libp2p.kad_dht.peer_routing:PeerRouting",
    "libp2p.kad_dht.provider_store:ProviderStore",
    "libp2p.pubsub.pubsub:Pubsub",
    "libp2p.pubsub.gossipsub:GossipSub",
    "libp2p.host.autonat.autonat:AutoNATService",
    "libp2p.relay.circuit_v2.dcutr:DCUtRProtocol",
    "libp2p.relay.circuit_v2.protocol:CircuitV2Protocol",
    "libp2p.network.connection.swarm_connection:SwarmConn",
    "libp2p.stream_muxer.mplex.mplex:Mplex",
    "libp2p.stream_muxer.mplex.mplex_stream:MplexStream",
    "libp2p.security.noise.transport:Transport",
    "libp2p.security.noise.io:NoiseTransportReadWriter",
    "libp2p.security.secure_session:SecureSession",
    "libp2p.stream_muxer.yamux.yamux:Yamux",
    "libp2p.stream_muxer.muxer_multistream:MuxerMultistream",
)
