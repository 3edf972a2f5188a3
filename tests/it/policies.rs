//! Client policies, faults and expectations (being written).
